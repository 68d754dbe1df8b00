"""Image intake: sniff, decode safely, reduce to grayscale, and the ONE preprocessing function.

Training, evaluation, the audit and the workers all call `load_radiograph`, so a model never
sees pixels prepared differently from those it was trained on. Rescaling to [0, 1] lives inside
the model, so this module hands out uint8.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from shared.dicom import decode_dicom, looks_like_dicom
from shared.errors import (
    CorruptImage,
    EmptyFile,
    ImageTooSmall,
    TooManyPixels,
    UnsupportedFormat,
)

if TYPE_CHECKING:
    from shared.config import Settings

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Rows or columns this flat (std of uint8 values) are padding or a collimator edge, not anatomy.
FLAT_LINE_STD = 3.0


class PreprocessParams(BaseModel):
    """Recorded in model.json so serving reproduces the training-time pipeline exactly.
    Frozen, so a set of parameters can key a cache (`shared.handoff.fingerprint`)."""

    model_config = ConfigDict(frozen=True)

    image_size: int = Field(128, ge=32, le=1024)
    trim_borders: bool = True
    max_trim_fraction: float = Field(0.2, ge=0, lt=0.5)
    interpolation: str = "bilinear"
    jpeg_draft: bool = True


@dataclass(frozen=True)
class IntakeLimits:
    max_pixels: int = 50_000_000
    min_side: int = 32

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeLimits:
        return cls(max_pixels=settings.max_pixels, min_side=settings.min_side)


def sniff_format(data: bytes) -> str:
    """Trust magic bytes, never the file name or the client's Content-Type."""
    if not data:
        raise EmptyFile("The upload is empty.")
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if looks_like_dicom(data):
        return "dicom"
    raise UnsupportedFormat(
        "Only JPEG, PNG and DICOM radiographs are accepted (checked by content, not by file name)."
    )


def decode_grayscale(
    data: bytes, limits: IntakeLimits, draft_side: int | None = None
) -> np.ndarray:
    """Decode to a 2-D uint8 array, upright, alpha flattened onto black, any bit depth."""
    if sniff_format(data) == "dicom":
        gray = decode_dicom(data, limits.max_pixels)
    else:
        gray = _decode_with_pillow(data, limits, draft_side)
    if min(gray.shape) < limits.min_side:
        raise ImageTooSmall(
            f"The image is {gray.shape[1]}x{gray.shape[0]} pixels; at least "
            f"{limits.min_side} on each side is needed."
        )
    return gray


@dataclass(frozen=True)
class AcceptedUpload:
    stored: bytes  # what to keep: the upload itself, or a DICOM's pixels without its tags
    model_input: np.ndarray | None  # the model's input, when the caller knew the preprocessing


def accept_upload(
    data: bytes,
    limits: IntakeLimits,
    params: PreprocessParams | None = None,
    draft_side: int | None = None,
) -> AcceptedUpload:
    """Prove an upload decodes, and from that one decode also make the model input when the
    preprocessing is known (exactly `load_radiograph`'s pixels: same draft, same steps).

    A DICOM is stored as a lossless PNG of its display pixels: exactly the uint8 image
    `decode_grayscale` makes of the DICOM, so the worker's result is unchanged, and not one
    header tag (name, ids, dates) reaches the store.
    """
    if params is not None:
        draft_side = model_draft_side(params)
    gray = decode_grayscale(data, limits, draft_side)
    stored = encode_png(gray) if sniff_format(data) == "dicom" else data
    return AcceptedUpload(stored, preprocess(gray, params) if params is not None else None)


def _decode_with_pillow(data: bytes, limits: IntakeLimits, draft_side: int | None) -> np.ndarray:
    image = _open_checked(data, limits)
    if draft_side and image.format == "JPEG":
        # DCT-domain downscaling: a 2,000 px JPEG decodes at 1/2..1/8 scale for a fraction
        # of the cost.
        image.draft("L", (draft_side, draft_side))
    try:
        image.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF: no orientation, then
            image = ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImage(f"The image could not be decoded: {error}.") from error
    return to_grayscale_array(image)


def _open_checked(data: bytes, limits: IntakeLimits) -> Image.Image:
    """Read only the header first, so a bomb is refused before any pixel buffer is allocated."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about corrupt metadata (EXIF) and carries on: so do we, quietly.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise TooManyPixels(str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"The image could not be read: {error}.") from error
    width, height = image.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"The image declares {width}x{height} pixels; the limit is {limits.max_pixels}."
        )
    return image


def to_grayscale_array(image: Image.Image) -> np.ndarray:
    """Every Pillow mode a radiograph arrives in, reduced to uint8 luminance."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _window_to_uint8(np.asarray(image, dtype=np.float64))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        # Transparent areas become black, the colour of air on a radiograph.
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L") if image.mode == "CMYK" else image.convert("L")
    return np.asarray(image, dtype=np.uint8)


def _window_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map high-bit-depth data onto 0..255 over its own range (a full-range window)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def flat_border_box(gray: np.ndarray, max_fraction: float) -> tuple[int, int, int, int]:
    """Rows [top, bottom) and columns [left, right) left after cutting uniform padding and
    collimator bands off each edge, at most `max_fraction` of a side each (the seed's border
    shortcut). The audit moves ground-truth masks through the same box."""
    height, width = gray.shape
    row_limit, column_limit = int(height * max_fraction), int(width * max_fraction)
    return (
        _leading_flat_lines(gray, row_limit),
        height - _leading_flat_lines(gray[::-1], row_limit),
        _leading_flat_lines(gray.T, column_limit),
        width - _leading_flat_lines(gray.T[::-1], column_limit),
    )


def trim_flat_borders(gray: np.ndarray, max_fraction: float) -> np.ndarray:
    top, bottom, left, right = flat_border_box(gray, max_fraction)
    return gray[top:bottom, left:right]


def _leading_flat_lines(lines: np.ndarray, limit: int, block: int = 16) -> int:
    """How many of the first `limit` rows of `lines` are flat. Reads a few rows at a time and
    stops at the first with anatomy, instead of the whole image: most films have no border."""
    run = 0
    while run < limit:
        rows = lines[run : min(run + block, limit)].astype(np.float64)
        flat = rows.std(axis=1) < FLAT_LINE_STD
        if not flat.all():
            return run + int(np.argmin(flat))
        run += len(rows)
    return run


RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX}


def preprocess(gray: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """Decoded grayscale -> the model's (size, size) uint8 input."""
    if params.trim_borders:
        gray = trim_flat_borders(gray, params.max_trim_fraction)
    size = params.image_size
    resized = Image.fromarray(gray).resize((size, size), RESAMPLING[params.interpolation])
    return np.asarray(resized, dtype=np.uint8)


def load_radiograph(data: bytes, params: PreprocessParams, limits: IntakeLimits) -> np.ndarray:
    """File bytes -> model input. The single path used by training and serving alike."""
    return preprocess(decode_grayscale(data, limits, model_draft_side(params)), params)


def model_draft_side(params: PreprocessParams) -> int | None:
    """Decode JPEGs at the smallest DCT scale that still leaves twice the model's side."""
    return 2 * params.image_size if params.jpeg_draft else None


def encode_png(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes from a uint8 array; level 1 is several times faster than the default 6."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
