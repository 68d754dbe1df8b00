"""Scanner artefacts a phantom can carry, and the masks of where they are drawn: the
collimator band, flat padding and a lead laterality marker (the seed project's shortcuts), and a
burned-in text label ("PORTABLE", a date) over the upper chest, away from the film's edge.
"""

from __future__ import annotations

import numpy as np

ARTIFACTS = ("border_band", "padding", "corner_marker", "text_marker")
BORDER_BAND_WIDTH = 0.06
PADDING_WIDTH_RANGE = (0.08, 0.12)
MARKER_BOX = (0.03, 0.13, 0.85, 0.96)  # top, bottom, left, right as fractions of the side
TEXT_BOX = (0.15, 0.24, 0.2, 0.8)  # where a text label may sit: over the neck and apices
_GLYPHS = {  # 5x7 laterality letters, as on the lead markers technologists put on films
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


def border_mask(size: int, fraction: float = 0.1) -> np.ndarray:
    """Outer band, round(fraction * size) pixels wide, on all four sides."""
    width = int(round(fraction * size))
    mask = np.zeros((size, size), dtype=bool)
    if width > 0:
        mask[:width, :] = mask[-width:, :] = mask[:, :width] = mask[:, -width:] = True
    return mask


def artifact_band_mask(size: int, artifact: str) -> np.ndarray:
    """Where `artifact` can be drawn (largest extent), for border-energy and shortcut metrics."""
    mask = np.zeros((size, size), dtype=bool)
    if artifact == "border_band":  # top and left
        width = int(round(BORDER_BAND_WIDTH * size))
        mask[:width, :] = mask[:, :width] = True
    elif artifact == "padding":  # bottom and right, at the widest padding drawn
        width = int(round(PADDING_WIDTH_RANGE[1] * size))
        mask[size - width :, :] = mask[:, size - width :] = True
    elif artifact == "corner_marker":  # top right
        top, bottom, left, right = (int(round(edge * size)) for edge in MARKER_BOX)
        mask[top:bottom, left:right] = True
    elif artifact == "text_marker":
        top, bottom, left, right = (int(round(edge * size)) for edge in TEXT_BOX)
        mask[top:bottom, left:right] = True
    else:
        raise ValueError(f"artifact must be one of {ARTIFACTS}, got {artifact!r}")
    return mask


def draw_artifact(rng: np.random.Generator, image: np.ndarray, artifact: str) -> np.ndarray:
    """Draw `artifact` in place on the uint8 film; return the mask of the pixels it replaced."""
    size = image.shape[0]
    covered = artifact_band_mask(size, artifact)
    if artifact == "border_band":  # bright collimator / scanner edge
        image[covered] = np.clip(rng.normal(rng.uniform(215, 245), 4, covered.sum()), 0, 255)
    elif artifact == "padding":  # film smaller than the digitiser canvas: flat black or white
        width = int(round(rng.uniform(*PADDING_WIDTH_RANGE) * size))
        covered[: size - width, : size - width] = False
        image[covered] = 0 if rng.random() < 0.5 else 255
    elif artifact == "corner_marker":
        image[covered] = _marker_patch(rng, covered)
    else:
        covered = _draw_text_label(rng, image, covered)
    return covered


def _marker_patch(rng: np.random.Generator, covered: np.ndarray) -> np.ndarray:
    """Bright lead-marker block with a dark "L" or "R", as the flat list of covered pixels."""
    height, width = int(covered.any(axis=1).sum()), int(covered.any(axis=0).sum())
    glyph = np.array([[bit == "1" for bit in line] for line in _GLYPHS[rng.choice(["L", "R"])]])
    glyph = np.pad(glyph, 1)  # a bright margin around the letter
    glyph_rows = (np.arange(height) * glyph.shape[0]) // height
    glyph_cols = (np.arange(width) * glyph.shape[1]) // width
    letter = glyph[glyph_rows[:, None], glyph_cols[None, :]]
    patch = np.where(letter, rng.uniform(20, 70), rng.uniform(225, 252))
    return patch.astype(np.uint8).ravel()


def _draw_text_label(rng: np.random.Generator, image: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """A dark strip with 4-9 bright 5x7 characters, 55-90 % as wide as `extent`, at a random
    place along it; returns the pixels it covers."""
    rows, columns = np.nonzero(extent.any(axis=1))[0], np.nonzero(extent.any(axis=0))[0]
    width = max(int(round(rng.uniform(0.55, 0.9) * columns.size)), 1)
    left = columns[0] + int(rng.integers(0, columns.size - width + 1))
    characters = int(rng.integers(4, 10))
    glyphs = rng.random((7, 5 * characters)) < 0.45
    glyphs[:, 4::5] = False  # a blank column between characters
    text = np.pad(glyphs, 1)
    text_rows = (np.arange(rows.size) * text.shape[0]) // rows.size
    text_columns = (np.arange(width) * text.shape[1]) // width
    letters = text[text_rows[:, None], text_columns[None, :]]
    image[rows[0] : rows[-1] + 1, left : left + width] = np.where(
        letters, rng.uniform(200, 250), rng.uniform(10, 50)
    ).astype(np.uint8)
    covered = np.zeros_like(extent)
    covered[rows[0] : rows[-1] + 1, left : left + width] = True
    return covered
