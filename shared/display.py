"""The display copy of a film: what the overlay, the heatmap and the page's original are drawn
on, kept from intake until the job expires.

Pixels only, never the file as sent: a DICOM's tags (names, ids, dates) never reach it, and a
JPEG's EXIF and comments are gone too. Grayscale at the film's own aspect ratio, the long side
at most `Settings.display_max_side` and never upscaled; JPEG at quality 85, which keeps a
typical 1,000-2,000 px film at a fraction of the upload's weight (measured: docs/operations.md).

Cheap where it can be, because the gateway pays for it on every upload:

- A grayscale JPEG that already fits (no resizing, no EXIF rotation, at most
  `MAX_KEPT_BITS_PER_PIXEL`) is kept as its own compressed pixels with every metadata segment
  removed (`shared.jpeg_segments`): the same pixels as the upload, no decode, no encode.
- A JPEG that a DCT-domain reduction (1/2, 1/4, 1/8: Pillow's draft mode) brings to between
  `DRAFT_MIN_FRACTION` of the display's long side and all of it is decoded at that scale and
  kept at that size, without a resample: a 2,000 px film becomes 1,000 px, for about a third
  of the CPU of a full decode and a bilinear resample to 1,024 (docs/operations.md).
- Anything else is decoded (at the largest draft still at least the display's size) and
  resampled to exactly `display_max_side`.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import ExifTags, Image

from shared.errors import CorruptImage
from shared.geometry import display_shape
from shared.imaging import EXIF_TRANSPOSE, IntakeLimits, decode_grayscale, sniff_format
from shared.jpeg_segments import pixels_only

DISPLAY_QUALITY = 85
# An upload kept as its own display copy may weigh up to this much: a film sent at quality
# 95-100 (2-4 bits a pixel) is re-encoded at DISPLAY_QUALITY instead (about 1 bit a pixel),
# so what each job holds for its lifetime stays bounded.
MAX_KEPT_BITS_PER_PIXEL = 3.0
# A film a JPEG draft brings this close to the display's long side keeps the draft's size: at
# most a quarter of the display's resolution given up for the full decode and the resample
# (10-20 ms of a gateway's CPU for 1,300-2,000 px films) it saves.
DRAFT_MIN_FRACTION = 0.75
DISPLAY_FORMAT = "JPEG"
DISPLAY_MEDIA_TYPE = "image/jpeg"


def display_copy(
    data: bytes, decoded: np.ndarray, limits: IntakeLimits, max_side: int, keep_as_sent: bool = True
) -> bytes:
    """The display copy of an accepted upload: a grayscale JPEG that fits as it is, metadata
    removed; else drawn from the pixels intake already decoded when they are fine enough (PNG,
    DICOM, small or draft-free JPEGs), or from one more JPEG decode in draft mode at the
    display's own scale. `keep_as_sent=False` draws every film (the benchmark's comparison)."""
    jpeg = sniff_format(data) == "jpeg"
    film_shape, upright_as_stored = _film_shape(data, decoded, jpeg)
    target = display_target(film_shape, max_side, jpeg)
    if keep_as_sent and target == film_shape and upright_as_stored:
        kept = pixels_only(data)
        if kept is not None and len(kept) * 8 <= MAX_KEPT_BITS_PER_PIXEL * target[0] * target[1]:
            return kept
    if decoded.shape[0] < target[0] or decoded.shape[1] < target[1]:
        # Drafted (decoded at 1/2..1/8 scale, both sides at least the short side asked for).
        decoded = decode_grayscale(data, limits, draft_side=min(target))
    return encode_display(_resize(decoded, target))


def display_target(film_shape: tuple[int, int], max_side: int, jpeg: bool) -> tuple[int, int]:
    """(rows, columns) of a film's display copy: the film's own size if it fits; for a JPEG,
    its size at a draft scale (1/2, 1/4, 1/8, as libjpeg rounds: up) that fits and keeps at
    least `DRAFT_MIN_FRACTION` of `max_side`; else the film scaled to `max_side` exactly."""
    exact = display_shape(film_shape, max_side)
    if not jpeg or exact == film_shape:
        return exact
    rows, columns = film_shape
    for scale in (2, 4, 8):
        drafted = (-(-rows // scale), -(-columns // scale))
        if max(drafted) <= max_side:
            return drafted if max(drafted) >= DRAFT_MIN_FRACTION * max_side else exact
    return exact


def encode_display(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format=DISPLAY_FORMAT, quality=DISPLAY_QUALITY)
    return buffer.getvalue()


def decode_display(data: bytes | None) -> np.ndarray | None:
    """The stored display copy as uint8 grayscale; None when missing or unreadable."""
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError):
        return None


def _film_shape(data: bytes, decoded: np.ndarray, jpeg: bool) -> tuple[tuple[int, int], bool]:
    """The film's full (rows, columns), upright: the header's size for a JPEG that may have been
    decoded in draft mode (an EXIF rotation swaps the sides, as the decode did); and whether
    the file's pixels are stored upright (a JPEG without an EXIF orientation to apply)."""
    if not jpeg:
        return (decoded.shape[0], decoded.shape[1]), False
    try:
        with warnings.catch_warnings():
            # Intake decoded this film already, ignoring corrupt EXIF the same way.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(io.BytesIO(data)) as image:
                columns, rows = image.size
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"The image could not be read: {error}.") from error
    if (rows > columns) != (decoded.shape[0] > decoded.shape[1]):
        rows, columns = columns, rows
    # As the decode judged it (`shared.imaging._upright`): an unknown value turns nothing.
    return (rows, columns), not (isinstance(orientation, int) and orientation in EXIF_TRANSPOSE)


def _resize(gray: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if gray.shape == shape:
        return gray
    resized = Image.fromarray(gray).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
