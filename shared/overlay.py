"""Rendering explanation maps as pictures: uint8 arrays in and out; no files, no pyplot.

On the model input (`colourise`, `blend`: the audit's figures, and pictures of jobs that have
no film copy) or on the film itself (`film_heatmap`, `film_overlay`: `shared.geometry`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.geometry import Placement, map_on_film

OVERLAY_ALPHA = 0.45


def _jet_lookup_table() -> np.ndarray:
    """The classic jet colour map as a (256, 3) uint8 table (blue = low, red = high)."""
    levels = np.linspace(0.0, 1.0, 256)
    channels = [np.clip(1.5 - np.abs(4.0 * levels - offset), 0.0, 1.0) for offset in (3, 2, 1)]
    return np.rint(np.stack(channels, axis=1) * 255).astype(np.uint8)


JET = _jet_lookup_table()


def upsample_map(cam: np.ndarray, size: int) -> np.ndarray:
    """(h, w) map in [0, 1] -> (size, size) float32, bilinear, still in [0, 1]."""
    image = Image.fromarray(cam.astype(np.float32), mode="F")
    resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    return np.clip(resized, 0.0, 1.0)


def colourise(cam: np.ndarray, size: int) -> np.ndarray:
    """The heatmap picture: (size, size, 3) uint8."""
    return JET[np.rint(upsample_map(cam, size) * 255).astype(np.uint8)]


def blend(radiograph: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Heatmap over the preprocessed radiograph the model saw: (S, S, 3) uint8."""
    size = radiograph.shape[0]
    gray = np.repeat(radiograph[..., None].astype(np.float32), 3, axis=2)
    mixed = (1.0 - alpha) * gray + alpha * colourise(cam, size).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def film_heatmap(cam: np.ndarray, placement: Placement, film_shape: tuple[int, int]) -> np.ndarray:
    """The heatmap at the film's own size: (H, W, 4) uint8, transparent where the model saw
    nothing (trimmed borders), so it can lie over the film picture as it is."""
    values, seen = map_on_film(cam, placement, film_shape)
    alpha = np.where(seen, 255, 0).astype(np.uint8)
    return np.dstack([JET[np.rint(values * 255).astype(np.uint8)], alpha])


def film_overlay(
    film: np.ndarray, cam: np.ndarray, placement: Placement, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """Heatmap over the film picture (uint8 grayscale): (H, W, 3) uint8; the film shows plain
    where the model saw nothing."""
    values, seen = map_on_film(cam, placement, film.shape)
    gray = np.repeat(film[..., None].astype(np.float32), 3, axis=2)
    colours = JET[np.rint(values * 255).astype(np.uint8)].astype(np.float32)
    weight = np.where(seen, alpha, 0.0)[..., None]
    return np.clip(np.rint((1.0 - weight) * gray + weight * colours), 0, 255).astype(np.uint8)
