"""Scanner artefacts a phantom can carry, and the masks of where they are drawn: the
collimator band, flat padding and a lead laterality marker (the seed project's shortcuts).
"""

from __future__ import annotations

import numpy as np

ARTIFACTS = ("border_band", "padding", "corner_marker")
BORDER_BAND_WIDTH = 0.06
PADDING_WIDTH_RANGE = (0.08, 0.12)
MARKER_BOX = (0.03, 0.13, 0.85, 0.96)  # top, bottom, left, right as fractions of the side
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
    else:
        image[covered] = _marker_patch(rng, covered)
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
