"""What makes a phantom benchmark hard, in attenuation units: diffuse ground glass, look-alikes
that NORMAL films carry as often as PNEUMONIA films (end-on vessels and granulomas, breast
shadows, a small effusion, plate atelectasis), and ECG electrodes with their leads.

Look-alikes and devices are drawn independently of the label, so their presence says nothing
about it; they only make a blob or brightness detector wrong.
"""

from __future__ import annotations

import numpy as np

from worker.phantoms.anatomy import (
    CORE_LEVEL_ANYWHERE,
    CORE_LEVEL_DEEP,
    draw_lesions,
    smoothstep,
)
from worker.phantoms.difficulty import Difficulty
from worker.phantoms.film import smooth_noise


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    return pixel[:, None], pixel[None, :]  # rows, columns in 0..1


def draw_pneumonia(
    rng: np.random.Generator, lungs: np.ndarray, difficulty: Difficulty
) -> tuple[np.ndarray, float]:
    """(0..1 level map, peak attenuation): focal consolidation anywhere in the lung fields, or
    bilateral patchy ground glass; contrast from barely visible to dense (log-uniform)."""
    low, high = difficulty.lesion_contrast
    contrast = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    if rng.random() < difficulty.diffuse_probability:
        return _diffuse_pattern(rng, lungs), contrast * 0.7
    core_level = CORE_LEVEL_ANYWHERE if difficulty.lesions_anywhere else CORE_LEVEL_DEEP
    return draw_lesions(rng, lungs, core_level=core_level), contrast


def _diffuse_pattern(rng: np.random.Generator, lungs: np.ndarray) -> np.ndarray:
    """Patchy opacities over 15-45 % of both lungs, densest in a random zone."""
    size = lungs.shape[0]
    rows, _ = _grid(size)
    patches = smooth_noise(rng, size, max(size // 10, 6))
    zone = 1.0 - np.abs(rows - rng.uniform(0.35, 0.75)) * rng.uniform(0.5, 2.0)
    cut = np.quantile(patches[lungs > 0.5], 1.0 - rng.uniform(0.15, 0.45))
    level = smoothstep(float(cut) - 0.4, float(cut) + 0.4, patches + 0.5 * zone) * lungs
    return level / max(float(level.max()), 1e-6)


def draw_lookalikes(rng: np.random.Generator, lungs: np.ndarray, probability: float) -> np.ndarray:
    """Attenuation of the look-alikes this film happens to carry (each with `probability`)."""
    extra = np.zeros_like(lungs)
    for draw in (_nodular_vessels, _breast_shadows, _effusion, _plate_atelectasis):
        if rng.random() < probability:
            extra += draw(rng, lungs)
    return extra


def _nodular_vessels(rng, lungs: np.ndarray) -> np.ndarray:
    """Two to six small dense round spots in the lungs: vessels end-on, calcified granulomas."""
    size = lungs.shape[0]
    rows, columns = _grid(size)
    inside = np.flatnonzero(lungs > 0.5)
    spots = np.zeros_like(lungs)
    for index in inside[rng.integers(0, inside.size, int(rng.integers(2, 7)))]:
        centre_row, centre_column = (index // size + 0.5) / size, (index % size + 0.5) / size
        radius = rng.uniform(0.008, 0.02)
        distance = ((rows - centre_row) ** 2 + (columns - centre_column) ** 2) / radius**2
        spots += rng.uniform(0.08, 0.25) / (1.0 + distance * distance)
    return spots


def _breast_shadows(rng, lungs: np.ndarray) -> np.ndarray:
    """Soft round densities over both lower zones, fading upwards."""
    rows, columns = _grid(lungs.shape[0])
    centre_row = rng.uniform(0.66, 0.78)
    radius, density = rng.uniform(0.14, 0.2), rng.uniform(0.04, 0.1)
    shadow = np.zeros_like(lungs)
    for side in (-1, 1):
        centre_column = 0.5 + side * rng.uniform(0.2, 0.27)
        distance = np.sqrt((rows - centre_row) ** 2 + (columns - centre_column) ** 2) / radius
        shadow += smoothstep(1.0, 0.6, distance) * smoothstep(centre_row - radius, centre_row, rows)
    return density * shadow


def _effusion(rng, lungs: np.ndarray) -> np.ndarray:
    """A small effusion: dense at one costophrenic angle, rising laterally (the meniscus)."""
    size = lungs.shape[0]
    rows, columns = _grid(size)
    side = 1 if rng.random() < 0.5 else -1
    half = (columns - 0.5) * side > 0
    lung_rows = np.nonzero((lungs > 0.5) & half)[0]
    if lung_rows.size == 0:
        return np.zeros_like(lungs)
    base = (lung_rows.max() + 0.5) / size
    lateral = np.clip(np.abs(columns - 0.5) * 2, 0, 1)
    level = base - rng.uniform(0.03, 0.08) * (0.5 + lateral)
    return rng.uniform(0.12, 0.28) * smoothstep(level - 0.01, level + 0.02, rows) * lungs * half


def _plate_atelectasis(rng, lungs: np.ndarray) -> np.ndarray:
    """A thin tilted band of collapsed lung in a lower zone."""
    rows, columns = _grid(lungs.shape[0])
    centre_row = rng.uniform(0.55, 0.7)
    centre_column = 0.5 + (1 if rng.random() < 0.5 else -1) * rng.uniform(0.12, 0.25)
    slope, half_length = rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.1)
    offset = (rows - centre_row) - slope * (columns - centre_column)
    along = smoothstep(half_length, half_length * 0.7, np.abs(columns - centre_column))
    band = np.exp(-((offset / rng.uniform(0.006, 0.012)) ** 2)) * along
    return rng.uniform(0.1, 0.22) * band * lungs


def draw_devices(rng: np.random.Generator, size: int) -> np.ndarray:
    """Three to five ECG electrodes (dense discs with a metal snap) and their leads running
    off the film's nearer side edge: metal, far denser than any tissue."""
    rows, columns = _grid(size)
    metal = np.zeros((size, size), dtype=np.float32)
    for _ in range(int(rng.integers(3, 6))):
        row, column = rng.uniform(0.2, 0.85), rng.uniform(0.15, 0.85)
        distance = np.sqrt((rows - row) ** 2 + (columns - column) ** 2)
        metal += 0.25 * smoothstep(0.022, 0.016, distance) + 0.4 * smoothstep(
            0.008, 0.004, distance
        )
        toward = 1.0 if column > 0.5 else 0.0
        sag = rng.uniform(-0.15, 0.15)
        fraction = (columns - column) / (toward - column + 1e-6)
        path = row + sag * fraction * (1 - fraction) * 4
        on_lead = (fraction >= 0) & (fraction <= 1)
        metal += 0.3 * np.exp(-(((rows - path) / 0.0035) ** 2)) * on_lead
    return np.minimum(metal, 0.6)
