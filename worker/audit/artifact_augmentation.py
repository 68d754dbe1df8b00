"""The shortcut fix's data half: paint scanner artefacts over every training film, both classes.

A shortcut exists when an artefact's presence differs between the classes. If, as in the seed
project's data, the artefact sits on (nearly) every PNEUMONIA film and on no NORMAL one, pasting
it onto a random half of the films is not enough: P(artefact | PNEUMONIA) stays 1 while
P(artefact | NORMAL) becomes 1/2, and its absence still means NORMAL. The region carries no
label information only when it is overwritten on every training film, with content drawn
independently of the label (the ablation in the bias report measures the difference). So every
training film gets each textured artefact type of the family (collimator band, lead marker)
painted over the type's full extent, with random brightness and pattern, before the ONE
preprocessing function runs. Flat padding is not painted: border trimming (the fix's
preprocessing half, applied when serving too) removes it from every film, so it cannot be
learned in the first place.

Validation and serving are untouched: they see films as they come, and the model simply never
learned anything from the painted regions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.imaging import IntakeLimits, PreprocessParams, decode_grayscale, preprocess
from worker.phantoms.artefacts import BORDER_BAND_WIDTH, MARKER_BOX

MARKER_GLYPH = (7, 5)  # rows, columns of the random "letter" on a lead marker


def _band_region(shape: tuple[int, int]) -> tuple[slice, slice]:
    """Top rows and left columns, as wide as the generator's band (any aspect ratio)."""
    height, width = shape
    return slice(0, round(BORDER_BAND_WIDTH * height)), slice(0, round(BORDER_BAND_WIDTH * width))


def paint_band(film: np.ndarray, rng: np.random.Generator) -> None:
    """A collimator band of any brightness, with film-like noise."""
    rows, columns = _band_region(film.shape)
    level, noise = rng.uniform(0, 255), rng.uniform(2, 8)
    film[rows, :] = np.clip(rng.normal(level, noise, film[rows, :].shape), 0, 255)
    film[:, columns] = np.clip(rng.normal(level, noise, film[:, columns].shape), 0, 255)


def paint_marker(film: np.ndarray, rng: np.random.Generator) -> None:
    """A lead marker over the generator's marker box: a bright block with a random dark glyph."""
    height, width = film.shape
    top, bottom, left, right = MARKER_BOX
    rows = np.arange(round(top * height), round(bottom * height))
    columns = np.arange(round(left * width), round(right * width))
    glyph = rng.random(MARKER_GLYPH) < 0.4
    glyph_rows = (np.arange(rows.size) * MARKER_GLYPH[0]) // rows.size
    glyph_columns = (np.arange(columns.size) * MARKER_GLYPH[1]) // columns.size
    letter = glyph[glyph_rows[:, None], glyph_columns[None, :]]
    patch = np.where(letter, rng.uniform(0, 90), rng.uniform(150, 255))
    film[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] = patch


PAINTERS: dict[str, Callable[[np.ndarray, np.random.Generator], None]] = {
    "border_band": paint_band,
    "corner_marker": paint_marker,
}


def paint_artifacts(
    film: np.ndarray, rng: np.random.Generator, probability: float = 1.0
) -> np.ndarray:
    """A copy of `film` with each artefact type painted with `probability` (1 = the fix)."""
    painted = film.copy()
    for painter in PAINTERS.values():
        if rng.random() < probability:
            painter(painted, rng)
    return painted


def augmented_images(
    root: Path, files: list[str], params: PreprocessParams, probability: float, seed: int
) -> np.ndarray:
    """(N, S, S) model inputs of root/file, each film painted before the usual preprocessing."""
    rng = np.random.default_rng(seed)
    limits = IntakeLimits()
    draft_side = 2 * params.image_size if params.jpeg_draft else None
    images = []
    for file in files:
        film = decode_grayscale((root / file).read_bytes(), limits, draft_side)
        images.append(preprocess(paint_artifacts(film, rng, probability), params))
    return np.stack(images)
