"""Ground-truth masks through the same geometry as their images: border trim, then resize.

`shared.imaging.preprocess` may cut flat padding off each edge and always resizes to the model's
input size (stretched, or letterboxed: scaled to fit and padded), so a lung or lesion mask drawn
on the original film no longer lines up with the model input unless it is cropped, resized and
placed exactly like the pixels. The audit scores maps on
model-input coordinates; this module is the only place that moves masks there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared import imaging
from shared.imaging import RESAMPLING, PreprocessParams, content_rectangle

MASK_THRESHOLD = 0.5  # a resized mask pixel counts as inside when over half its area was


@dataclass(frozen=True)
class Box:
    """Rows [top, bottom) and columns [left, right) of the decoded image that were kept."""

    top: int
    bottom: int
    left: int
    right: int


def flat_border_box(gray: np.ndarray, max_fraction: float) -> Box:
    """The box `shared.imaging.trim_flat_borders` keeps: the one definition, as a `Box`."""
    return Box(*imaging.flat_border_box(gray, max_fraction))


def preprocess_box(gray: np.ndarray, params: PreprocessParams) -> Box:
    """Which part of the decoded image `preprocess(gray, params)` resizes to the model input."""
    if params.trim_borders:
        return flat_border_box(gray, params.max_trim_fraction)
    return Box(0, gray.shape[0], 0, gray.shape[1])


def scale_box(box: Box, source_shape: tuple[int, int], target_shape: tuple[int, int]) -> Box:
    """The same box on an image of another resolution (a JPEG decoded in draft mode is smaller
    than the film its mask was drawn on)."""
    row_scale = target_shape[0] / source_shape[0]
    column_scale = target_shape[1] / source_shape[1]
    return Box(
        top=int(round(box.top * row_scale)),
        bottom=int(round(box.bottom * row_scale)),
        left=int(round(box.left * column_scale)),
        right=int(round(box.right * column_scale)),
    )


def transform_mask(
    mask: np.ndarray, gray_shape: tuple[int, int], box: Box, params: PreprocessParams
) -> np.ndarray:
    """A boolean mask on the original film -> a boolean mask on the model input.

    `box` was computed on the decoded image of shape `gray_shape`; the mask may be at another
    resolution. The crop is the image's crop, and the resize uses the image's interpolation on
    the mask as a float, thresholded at one half, so the mask's edge lands where the image's does.
    """
    # The rectangle comes from the image's own trimmed shape, as in `preprocess`: the mask's
    # may round differently at another resolution.
    top, left, height, width = content_rectangle(
        (box.bottom - box.top, box.right - box.left), params
    )
    box = scale_box(box, gray_shape, mask.shape)
    cropped = mask[box.top : box.bottom, box.left : box.right].astype(np.float32)
    resized = Image.fromarray(cropped).resize((width, height), RESAMPLING[params.interpolation])
    placed = np.zeros((params.image_size, params.image_size), dtype=bool)
    placed[top : top + height, left : left + width] = np.asarray(resized) > MASK_THRESHOLD
    return placed
