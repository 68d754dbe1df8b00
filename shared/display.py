"""The display copy of a film: what the overlay, the heatmap and the page's original are drawn
on, kept from intake until the job expires.

Pixels only, never the file as sent: a DICOM's tags (names, ids, dates) never reach it, and a
JPEG's EXIF is gone too. Grayscale at the film's own aspect ratio, the long side at most
`Settings.display_max_side` and never upscaled; JPEG at quality 85, which keeps a typical
1,000-2,000 px film at a fraction of the upload's weight (measured: docs/operations.md).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from shared.errors import CorruptImage
from shared.geometry import display_shape
from shared.imaging import IntakeLimits, decode_grayscale, sniff_format

DISPLAY_QUALITY = 85
DISPLAY_FORMAT = "JPEG"
DISPLAY_MEDIA_TYPE = "image/jpeg"


def display_copy(data: bytes, decoded: np.ndarray, limits: IntakeLimits, max_side: int) -> bytes:
    """The display copy of an accepted upload, from the pixels intake already decoded when they
    are fine enough (PNG, DICOM, small or draft-free JPEGs), else from one more JPEG decode in
    draft mode at the display's own scale."""
    film_shape = _film_shape(data, decoded)
    target = display_shape(film_shape, max_side)
    if decoded.shape[0] < target[0] or decoded.shape[1] < target[1]:
        # Drafted (decoded at 1/2..1/8 scale, both sides at least the short side asked for).
        decoded = decode_grayscale(data, limits, draft_side=min(target))
    return encode_display(_resize(decoded, target))


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


def _film_shape(data: bytes, decoded: np.ndarray) -> tuple[int, int]:
    """The film's full (rows, columns), upright: the header's size for a JPEG that may have been
    decoded in draft mode (an EXIF rotation swaps the sides, as the decode did)."""
    if sniff_format(data) != "jpeg":
        return decoded.shape[0], decoded.shape[1]
    try:
        with warnings.catch_warnings():
            # Intake decoded this film already, ignoring corrupt EXIF the same way.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(io.BytesIO(data)) as image:
                columns, rows = image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"The image could not be read: {error}.") from error
    if (rows > columns) != (decoded.shape[0] > decoded.shape[1]):
        rows, columns = columns, rows
    return rows, columns


def _resize(gray: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if gray.shape == shape:
        return gray
    resized = Image.fromarray(gray).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
