"""A malformed-image corpus made on the fly: every file a client (or an attacker) may send.

`corpus()` maps a name to (file bytes, expected): `OK` for files that must give a result, or
the (HTTP status, error code) they must be refused with. `mutants()` derives seeded random
corruptions of valid files, whose only requirement is "a result or a clear 4xx".
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from functools import cache

import numpy as np
from PIL import Image

from tests.support.images import declared_huge_png, encode, odd_formats, phantom

OK = "ok"
Expected = str | tuple[int, str]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png(width: int, height: int, rows: bytes, *extra: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header), *extra, _chunk(b"IDAT", zlib.compress(rows, 9))]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def real_png_bomb(side: int = 8000) -> bytes:
    """64 MP of zeros in ~60 kB: a true decompression bomb, over the 50 MP limit."""
    return _png(side, side, bytes(side + 1) * side)


def text_bomb_png(base: np.ndarray) -> bytes:
    """A valid image with a zTXt chunk that inflates to 64 MB."""
    payload = b"Comment\x00\x00" + zlib.compress(bytes(64 * 1024 * 1024), 9)
    rows = b"".join(b"\x00" + row.tobytes() for row in base)
    return _png(base.shape[1], base.shape[0], rows, _chunk(b"zTXt", payload))


def jpeg_declaring(valid_jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header's size: a small file that claims a gigapixel image."""
    marker = valid_jpeg.index(b"\xff\xc0")
    size = struct.pack(">HH", height, width)
    return valid_jpeg[: marker + 5] + size + valid_jpeg[marker + 9 :]


def animated(base: np.ndarray, format: str) -> bytes:
    frames = [Image.fromarray(base), Image.fromarray(255 - base)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def garbage_exif_jpeg(valid_jpeg: bytes) -> bytes:
    app1 = b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + bytes(range(256)) * 4
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return valid_jpeg[:2] + segment + valid_jpeg[2:]


@cache  # the bombs take a second to build
def corpus() -> dict[str, tuple[bytes, Expected]]:
    base = phantom(seed=11, pneumonia=True, size=96).image
    gray = Image.fromarray(base)
    jpeg, png = encode(gray, "JPEG", quality=90), encode(gray, "PNG")
    refused = {
        "zero_length": (b"", (422, "empty_file")),
        "text": (b"patient: Jane Doe\n", (415, "unsupported_format")),
        "animated_gif": (animated(base, "GIF"), (415, "unsupported_format")),
        "bmp": (encode(gray, "BMP"), (415, "unsupported_format")),
        "tiff_16_bit": (
            encode(Image.fromarray(base.astype(np.uint16)), "TIFF"),
            (415, "unsupported_format"),
        ),  # fmt: skip
        "png_renamed_jpeg_magic_broken": (b"\xff\xd8" + png[2:], (415, "unsupported_format")),
        "png_magic_only": (png[:8], (422, "corrupt_image")),
        "jpeg_magic_only": (jpeg[:3], (422, "corrupt_image")),
        "truncated_png": (png[: len(png) // 2], (422, "corrupt_image")),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], (422, "corrupt_image")),
        "png_bad_crc": (png[:29] + b"\x00\x00\x00\x00" + png[33:], (422, "corrupt_image")),
        "one_pixel": (encode(Image.new("L", (1, 1)), "PNG"), (422, "image_too_small")),
        "declared_bomb_png": (declared_huge_png(), (413, "too_many_pixels")),
        "real_bomb_png": (real_png_bomb(), (413, "too_many_pixels")),
        "declared_bomb_jpeg": (jpeg_declaring(jpeg, 60_000, 60_000), (413, "too_many_pixels")),
        "text_chunk_bomb_png": (text_bomb_png(base), (422, "corrupt_image")),
        "dicom_garbage": (bytes(128) + b"DICM" + bytes(range(256)), (422, "dicom_without_pixels")),
    }
    accepted = {name: (data, OK) for name, data in odd_formats(base).items()}
    accepted |= {
        "apng": (animated(base, "PNG"), OK),
        "progressive_jpeg": (encode(gray, "JPEG", progressive=True), OK),
        "garbage_exif_jpeg": (garbage_exif_jpeg(jpeg), OK),
        "thin_strip_png": (encode(Image.fromarray(np.tile(base[:40], (1, 40))), "PNG"), OK),
        "flat_sixteen_bit_png": (
            encode(Image.fromarray(np.full((64, 64), 7, np.uint16)), "PNG"),
            OK,
        ),
    }
    return refused | accepted


def mutants(count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Seeded corruptions of a valid PNG and JPEG: flipped bits, overwritten runs, cuts."""
    rng = np.random.default_rng(seed)
    gray = Image.fromarray(phantom(seed=12, pneumonia=False, size=64).image)
    sources = {"png": encode(gray, "PNG"), "jpeg": encode(gray, "JPEG", quality=85)}
    for index in range(count):
        kind = ("png", "jpeg")[index % 2]
        data = bytearray(sources[kind])
        for _ in range(int(rng.integers(1, 6))):
            position = int(rng.integers(2, len(data)))  # keep the magic: reach the decoder
            data[position : position + int(rng.integers(1, 9))] = rng.bytes(int(rng.integers(1, 9)))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(8, len(data)))]
        yield f"{kind}-{index}", bytes(data)
