"""Where the model's input came from on the film, and explanation maps carried back there.

`shared.imaging.preprocess` cuts flat borders off the decoded film, then stretches or
letterboxes what is left into the square model input. A Grad-CAM map lives on that square, so
drawn on the film as it is it would sit on the wrong anatomy (a 1776 x 1416 film squashed to
128 x 128). `Placement` records the two steps of one film's preprocessing in fractions, so it
holds for the decode the model saw (a JPEG in draft mode) and for a display copy of the same
film at any other resolution alike; `map_on_film` samples the map through it.

The sampling uses the pixel-centre convention of Pillow's resize, the one `preprocess` used:
a map peak at model-input pixel (row, column) lands on the film pixel that produced it.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.imaging import BorderBox, PreprocessParams, content_rectangle, flat_border_box


class Span(BaseModel):
    """A half-open interval [start, stop) as fractions of a side."""

    model_config = ConfigDict(frozen=True)

    start: float = Field(ge=0, le=1)
    stop: float = Field(ge=0, le=1)


class Placement(BaseModel):
    """Which part of the film the model saw (`crop_*`, fractions of the film's height and
    width), and which part of the square model input it fills (`input_*`, fractions of the
    input's side; all of it for squash, a centred band for letterbox)."""

    model_config = ConfigDict(frozen=True)

    crop_rows: Span
    crop_columns: Span
    input_rows: Span
    input_columns: Span

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Placement | None:
        """None for a missing or unreadable record (then pictures fall back to the input)."""
        if data is None:
            return None
        try:
            return cls.model_validate_json(data)
        except (ValidationError, json.JSONDecodeError):
            return None


def placement_of(
    gray: np.ndarray, params: PreprocessParams, border_box: BorderBox | None = None
) -> Placement:
    """The placement `preprocess(gray, params)` uses: the same trim box (`border_box`, where
    the caller has it already), the same rectangle."""
    rows, columns = gray.shape
    top, bottom, left, right = (0, rows, 0, columns)
    if params.trim_borders:
        top, bottom, left, right = border_box or flat_border_box(gray, params.max_trim_fraction)
    size = params.image_size
    input_top, input_left, height, width = content_rectangle((bottom - top, right - left), params)
    return Placement(
        crop_rows=Span(start=top / rows, stop=bottom / rows),
        crop_columns=Span(start=left / columns, stop=right / columns),
        input_rows=Span(start=input_top / size, stop=(input_top + height) / size),
        input_columns=Span(start=input_left / size, stop=(input_left + width) / size),
    )


def display_shape(film_shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(rows, columns) of a picture of the film with the long side at most `max_side`, at the
    film's own aspect ratio and never larger than the film."""
    rows, columns = film_shape
    scale = min(1.0, max_side / max(rows, columns))
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def map_on_film(
    cam: np.ndarray, placement: Placement, film_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A (h, w) map on the model input -> (values in [0, 1], seen) on a film picture of
    `film_shape`: `seen` is False on what the model never saw (trimmed borders), where the
    values are 0. Bilinear, so the map is as smooth as `shared.overlay.upsample_map` draws it."""
    rows, row_seen = _film_to_map(
        film_shape[0], cam.shape[0], placement.crop_rows, placement.input_rows
    )
    columns, column_seen = _film_to_map(
        film_shape[1], cam.shape[1], placement.crop_columns, placement.input_columns
    )
    values = _sample_axis(_sample_axis(cam.astype(np.float32), rows, axis=0), columns, axis=1)
    seen = row_seen[:, None] & column_seen[None, :]
    return np.where(seen, np.clip(values, 0.0, 1.0), 0.0).astype(np.float32), seen


def _film_to_map(
    film_length: int, map_length: int, crop: Span, content: Span
) -> tuple[np.ndarray, np.ndarray]:
    """For each film pixel along one axis: its position on the map (continuous, pixel centres
    at i + 0.5) and whether it lies inside the crop the model saw."""
    centres = (np.arange(film_length) + 0.5) / film_length  # fractions of the film
    crop_length = max(crop.stop - crop.start, 1e-9)
    within_crop = (centres - crop.start) / crop_length
    on_input = content.start + within_crop * (content.stop - content.start)
    seen = (centres >= crop.start) & (centres < crop.stop)
    return on_input * map_length, seen


def _sample_axis(values: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation along `axis` at continuous `positions` (edge values beyond the ends,
    as Pillow's resize does)."""
    length = values.shape[axis]
    index = np.clip(positions - 0.5, 0.0, length - 1.0)
    lower = np.floor(index).astype(np.intp)
    upper = np.minimum(lower + 1, length - 1)
    weight = (index - lower).astype(np.float32)
    shape = [1, 1]
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    return (1.0 - weight) * np.take(values, lower, axis=axis) + weight * np.take(
        values, upper, axis=axis
    )


def model_input_point(
    placement: Placement, film_point: tuple[float, float], input_size: int
) -> tuple[float, float]:
    """Where a film point (row, column as fractions of the film) lands on the model input, in
    input pixels: the forward direction of `map_on_film`, for tests and the audit."""
    coordinates = []
    for fraction, crop, content in (
        (film_point[0], placement.crop_rows, placement.input_rows),
        (film_point[1], placement.crop_columns, placement.input_columns),
    ):
        within = (fraction - crop.start) / max(crop.stop - crop.start, 1e-9)
        coordinates.append((content.start + within * (content.stop - content.start)) * input_size)
    return coordinates[0], coordinates[1]
