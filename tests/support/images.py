"""Image factories: plain functions returning file bytes in every shape a client may send."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from worker.phantoms.radiograph import Phantom, generate_phantom


def phantom(seed: int, pneumonia: bool, size: int = 256) -> Phantom:
    return generate_phantom(np.random.default_rng(seed), size, pneumonia=pneumonia)


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def phantom_png(seed: int, pneumonia: bool = True, size: int = 256) -> bytes:
    return encode(Image.fromarray(phantom(seed, pneumonia, size).image), "PNG")


def phantom_jpeg(seed: int, pneumonia: bool = True, size: int = 256) -> bytes:
    return encode(Image.fromarray(phantom(seed, pneumonia, size).image), "JPEG", quality=92)


def odd_formats(base: np.ndarray) -> dict[str, bytes]:
    """The same radiograph in every mode and bit depth Pillow may hand the decoder."""
    gray = Image.fromarray(base)
    rgb = gray.convert("RGB")
    sixteen_bit = Image.fromarray(base.astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    return {
        "gray_png": encode(gray, "PNG"),
        "gray_jpeg": encode(gray, "JPEG"),
        "rgb_jpeg": encode(rgb, "JPEG"),
        "rgb_png": encode(rgb, "PNG"),
        "sixteen_bit_png": encode(sixteen_bit, "PNG"),
        "palette_png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette_transparent_png": encode(gray.convert("P"), "PNG", transparency=0),
        "rgba_png": encode(rgba, "PNG"),
        "la_png": encode(gray.convert("LA"), "PNG"),
        "cmyk_jpeg": encode(rgb.convert("CMYK"), "JPEG"),
        "one_bit_png": encode(gray.convert("1"), "PNG"),
        "exif_rotated_jpeg": encode(gray.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif),
    }


def declared_huge_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny file whose header declares a huge image: a decompression bomb's signature."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
