"""Image intake: sniff, decode safely, reduce to grayscale, and the ONE preprocessing function.

Training, evaluation, the audit and the workers all call `load_radiograph`, so a model never
sees pixels prepared differently from those it was trained on. Rescaling to [0, 1] lives inside
the model, so this module hands out uint8.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import ExifTags, Image
from pydantic import BaseModel, ConfigDict, Field

from shared.dicom import decode_dicom, dicom_decode_cost, looks_like_dicom
from shared.errors import (
    CorruptImage,
    EmptyFile,
    ImageTooSmall,
    TooManyPixels,
    UnsupportedFormat,
)

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.decode_budget import DecodeBudget

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Rows reduced to uint8 per step (`to_grayscale_array`): a few megabytes of temporaries where
# whole-film float64 copies took gigabytes.
STRIP_BYTES = 4 * 1024 * 1024
# What `decode_cost` adds for the strips (float64 and their copies) and the libraries' buffers.
STRIP_ALLOWANCE = 8 * STRIP_BYTES
# Film-sized uint8 arrays a decode may hold at once: the result, its upright or cropped copy,
# and a stored PNG or display copy made from it.
GRAY_COPIES = 3
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
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
    # How a non-square film becomes the square input: stretched ("squash", what every artifact
    # made before this field existed was trained on, so a card without it means squash), or
    # scaled to fit and padded with black ("letterbox"), keeping the anatomy's proportions.
    fit: Literal["squash", "letterbox"] = "squash"


@dataclass(frozen=True)
class IntakeLimits:
    max_pixels: int = 50_000_000
    min_side: int = 32
    # Shared by a process's decodes: `load_radiograph` reserves each one's cost from it first.
    budget: DecodeBudget | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, budget: DecodeBudget | None = None) -> IntakeLimits:
        return cls(max_pixels=settings.max_pixels, min_side=settings.min_side, budget=budget)


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
    decoded: np.ndarray | None = None  # the decode both came from (`shared.display`, `.geometry`)
    border_box: BorderBox | None = None  # the trim the model input was cut with (`.geometry`)


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
    gray = decode_grayscale(data, limits, intake_draft_side(params, draft_side))
    stored = encode_png(gray) if sniff_format(data) == "dicom" else data
    if params is None:
        return AcceptedUpload(stored, None, gray)
    box = border_box_of(gray, params)
    return AcceptedUpload(stored, preprocess(gray, params, box), gray, box)


def decode_cost(data: bytes, limits: IntakeLimits, draft_side: int | None = None) -> int:
    """Bytes a decode of `data` holds at its peak, read from the header alone: the decoder's
    own buffer, the uint8 film with the copies made of it (upright, cropped, stored), and the
    strips between the two. An upper bound, so a budget of these never overruns. Raises what
    decoding would for a bad header, before anything is allocated."""
    if sniff_format(data) == "dicom":
        return dicom_decode_cost(data, limits.max_pixels, GRAY_COPIES, STRIP_ALLOWANCE)
    image = _open_checked(data, limits, draft_side)
    width, height = image.size
    return width * height * (_stored_bytes_per_pixel(image.mode) + GRAY_COPIES) + STRIP_ALLOWANCE


def intake_draft_side(params: PreprocessParams | None, draft_side: int | None) -> int | None:
    """The JPEG draft `accept_upload` decodes at: the model's when it is known."""
    return model_draft_side(params) if params is not None else draft_side


def _stored_bytes_per_pixel(mode: str) -> int:
    """What Pillow keeps per pixel: one byte for 8-bit single-band modes, two for 16-bit, and
    four for everything else (it pads RGB and LA to four)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _decode_with_pillow(data: bytes, limits: IntakeLimits, draft_side: int | None) -> np.ndarray:
    image = _open_checked(data, limits, draft_side)
    try:
        image.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF: no orientation, then
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImage(f"The image could not be decoded: {error}.") from error
    gray = to_grayscale_array(image)
    del image  # the decoder's buffer goes before the upright copy is made
    return _upright(gray, orientation)


def _upright(gray: np.ndarray, orientation: object) -> np.ndarray:
    """Apply an EXIF orientation (as `ImageOps.exif_transpose` does) to the uint8 film rather
    than to the decoder's buffer: the same pixels, from a copy a quarter or half the size."""
    method = EXIF_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    if method is None:
        return gray
    return np.asarray(Image.fromarray(gray).transpose(method), dtype=np.uint8)


def _open_checked(data: bytes, limits: IntakeLimits, draft_side: int | None = None) -> Image.Image:
    """Read only the header first, so a bomb is refused before any pixel buffer is allocated.
    A JPEG is set to decode at its draft scale, so its size is the one decoding allocates."""
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
    if draft_side and image.format == "JPEG":
        # DCT-domain downscaling: a 2,000 px JPEG decodes at 1/2..1/8 scale for a fraction
        # of the cost.
        image.draft("L", (draft_side, draft_side))
    return image


def to_grayscale_array(image: Image.Image) -> np.ndarray:
    """Every Pillow mode a radiograph arrives in, reduced to uint8 luminance.

    Converted a strip of rows at a time into one uint8 array: every step is per pixel, so the
    result is the whole image's conversion, without whole-image float or RGBA copies (a 7,000
    px 16-bit film took over a gigabyte as float64)."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        low, high = _extremes(image)
        if image.mode.startswith("I;16"):
            # Every 16-bit value through the same arithmetic once, then a table lookup per
            # pixel: the same bytes, several times faster than float64 per pixel.
            table = _window_to_uint8(np.arange(65536, dtype=np.float64), low, high)
            return _in_strips(image, 2, lambda strip: table[np.asarray(strip)])
        return _in_strips(
            image, 8, lambda strip: _window_to_uint8(np.asarray(strip, np.float64), low, high)
        )
    return _in_strips(image, 4, lambda strip: np.asarray(_luminance(strip), dtype=np.uint8))


def _luminance(image: Image.Image) -> Image.Image:
    """An 8-bit image of any mode as "L"; transparency flattened onto black."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        # Transparent areas become black, the colour of air on a radiograph.
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L") if image.mode == "CMYK" else image.convert("L")
    return image


def _in_strips(
    image: Image.Image, bytes_per_pixel: int, convert: Callable[[Image.Image], np.ndarray]
) -> np.ndarray:
    """`convert` applied to bands of whole rows, written into one (height, width) uint8 array."""
    width, height = image.size
    gray = np.empty((height, width), dtype=np.uint8)
    rows = max(1, STRIP_BYTES // (width * bytes_per_pixel))
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        gray[top:bottom] = convert(image.crop((0, top, width, bottom)))
    return gray


def _extremes(image: Image.Image) -> tuple[float, float]:
    """The lowest and highest value of a single-band image, read strip by strip (Pillow's own
    `getextrema` refuses the big-endian 16-bit modes)."""
    width, height = image.size
    rows = max(1, STRIP_BYTES // (width * 4))
    extremes = [
        (float(values.min()), float(values.max()))
        for values in (
            np.asarray(image.crop((0, top, width, min(top + rows, height))))
            for top in range(0, height, rows)
        )
    ]
    return min(low for low, _ in extremes), max(high for _, high in extremes)


def _window_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map high-bit-depth data onto 0..255 over the film's own range (a full-range window)."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


BorderBox = tuple[int, int, int, int]  # rows [top, bottom), columns [left, right)


def flat_border_box(gray: np.ndarray, max_fraction: float) -> BorderBox:
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


def border_box_of(gray: np.ndarray, params: PreprocessParams) -> BorderBox | None:
    """The trim `preprocess(gray, params)` makes, found once for it and `shared.geometry`;
    None where the model's preprocessing trims nothing."""
    return flat_border_box(gray, params.max_trim_fraction) if params.trim_borders else None


def trim_flat_borders(
    gray: np.ndarray, max_fraction: float, border_box: BorderBox | None = None
) -> np.ndarray:
    """`gray` inside its flat-border box (`border_box`, where the caller has it already)."""
    top, bottom, left, right = border_box or flat_border_box(gray, max_fraction)
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


def preprocess(
    gray: np.ndarray, params: PreprocessParams, border_box: BorderBox | None = None
) -> np.ndarray:
    """Decoded grayscale -> the model's (size, size) uint8 input. `shared.geometry` follows
    these steps to carry maps back onto the film and the audit to carry masks onto the input.
    `border_box`: this film's `flat_border_box`, where the caller has it already."""
    if params.trim_borders:
        gray = trim_flat_borders(gray, params.max_trim_fraction, border_box)
    size = params.image_size
    top, left, height, width = content_rectangle(gray.shape, params)
    resized = Image.fromarray(gray).resize((width, height), RESAMPLING[params.interpolation])
    if (height, width) == (size, size):
        return np.asarray(resized, dtype=np.uint8)
    square = np.zeros((size, size), dtype=np.uint8)  # black: the colour of air on a film
    square[top : top + height, left : left + width] = np.asarray(resized, dtype=np.uint8)
    return square


def content_rectangle(
    trimmed_shape: tuple[int, ...], params: PreprocessParams
) -> tuple[int, int, int, int]:
    """Where the trimmed film lands in the model input: top, left, height, width in pixels.
    Squash fills the square; letterbox scales the long side to fit and centres the short one."""
    size = params.image_size
    if params.fit == "squash":
        return 0, 0, size, size
    rows, columns = trimmed_shape[:2]
    scale = size / max(rows, columns)
    height = min(size, max(1, round(rows * scale)))
    width = min(size, max(1, round(columns * scale)))
    return (size - height) // 2, (size - width) // 2, height, width


def load_radiograph(data: bytes, params: PreprocessParams, limits: IntakeLimits) -> np.ndarray:
    """File bytes -> model input. The single path used by training and serving alike. With a
    budget in `limits`, waits until the decode's memory fits in it (`decode_memory`)."""
    draft_side = model_draft_side(params)
    with decode_memory(data, limits, draft_side):
        return preprocess(decode_grayscale(data, limits, draft_side), params)


@contextmanager
def decode_memory(data: bytes, limits: IntakeLimits, draft_side: int | None) -> Iterator[None]:
    """Hold the decode's cost (`decode_cost`) in `limits.budget` for the block, waiting for it
    to fit; wrap what keeps the decoded film alive too. Without a budget, nothing is held."""
    if limits.budget is None:
        yield
        return
    with limits.budget.reserve(decode_cost(data, limits, draft_side)):
        yield


def model_draft_side(params: PreprocessParams) -> int | None:
    """Decode JPEGs at the smallest DCT scale that still leaves twice the model's side."""
    return 2 * params.image_size if params.jpeg_draft else None


def encode_png(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes from a uint8 array; level 1 is several times faster than the default 6."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
