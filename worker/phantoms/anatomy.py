"""Phantom anatomy and consolidations, in attenuation units (0 = air, larger = denser =
brighter on the film): body, lungs, mediastinum and heart, spine, ribs, clavicles, vessels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.phantoms.difficulty import EASY, Difficulty
from worker.phantoms.film import smooth_noise

LESION_AREA_RANGE = (0.02, 0.08)  # total lesion-mask area of a PNEUMONIA phantom, image fraction
# Lesion centres lie where the lung field exceeds this fraction of its peak (`draw_lesions`):
# deep in a lung, or anywhere down to the bases and the retrocardiac lung.
CORE_LEVEL_DEEP = 0.7
CORE_LEVEL_ANYWHERE = 0.3


def smoothstep(edge0: float, edge1: float, value: np.ndarray) -> np.ndarray:
    """0 before edge0, 1 beyond edge1, smooth between (edge0 > edge1 gives a falling edge)."""
    t = value - edge0  # in place from here: this runs ~20 times per phantom
    t *= 1.0 / (edge1 - edge0)
    np.clip(t, 0.0, 1.0, out=t)
    shape = t * -2.0
    shape += 3.0
    shape *= t
    shape *= t
    return shape


@dataclass(frozen=True)
class Pose:
    """How one film catches its patient: position, tilt, breath and projection."""

    scale: float
    shift_across: float
    shift_down: float
    angle_degrees: float
    inspiration: float = 0.0  # diaphragm shift, fraction of the film height (+ = deeper breath)
    heart_magnification: float = 1.0  # AP films magnify the heart (it lies far from the detector)


def draw_pose(rng: np.random.Generator, difficulty: Difficulty = EASY) -> Pose:
    """A film's pose. With `EASY` the draws are the original generator's, in its order."""
    scale = rng.uniform(*difficulty.scale_range)
    shift_across, shift_down = rng.normal(0.0, 0.015), rng.normal(0.0, 0.02)
    angle = rng.normal(0.0, difficulty.rotation_degrees)
    if difficulty is EASY:
        return Pose(scale, shift_across, shift_down, angle)
    anterior_posterior = rng.random() < difficulty.ap_probability
    return Pose(
        scale * (1.06 if anterior_posterior else 1.0),
        shift_across * 2,
        shift_down * 2,
        angle,
        inspiration=rng.uniform(*difficulty.inspiration_range),
        heart_magnification=rng.uniform(1.12, 1.25) if anterior_posterior else 1.0,
    )


def _anatomy_grid(pose: Pose, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in patient units: x across (0 = midline), y down (0 top, 1 bottom of film)."""
    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    across = (pixel[None, :] - 0.5 - pose.shift_across) / pose.scale
    down = (pixel[:, None] - 0.5 - pose.shift_down) / pose.scale
    angle = np.deg2rad(pose.angle_degrees)  # patients never stand perfectly straight
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return across * cos + down * sin, down * cos - across * sin + np.float32(0.5)


def draw_anatomy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation map and soft lung field (1 = aerated lung, 0 = anything else)."""
    attenuation, lung_field, _ = draw_patient(rng, size)
    return attenuation, lung_field


def draw_patient(
    rng: np.random.Generator, size: int, pose: Pose | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attenuation map, soft lung field (1 = aerated lung seen clear of the heart, 0 = anything
    else) and the lungs' whole extent (also behind the heart). `rng` draws the patient; `pose`
    (default: drawn from `rng` too, the original generator) places it on this film, so films of
    one patient share their anatomy and differ by pose."""
    pose = pose or draw_pose(rng)
    x, y = _anatomy_grid(pose, size)
    body = _body_thickness(rng, x, y)
    central = _mediastinum_and_heart(rng, x, y, pose.heart_magnification)
    lungs = np.maximum(
        _lung(rng, x, y, -1, pose.inspiration), _lung(rng, x, y, 1, pose.inspiration)
    )
    lung_field = lungs * (1 - central)
    texture = 0.04 * smooth_noise(rng, size, 6) + 0.02 * smooth_noise(rng, size, size // 6)
    trachea = smoothstep(0.024, 0.014, np.abs(x)) * smoothstep(0.38, 0.33, y)  # air, to carina
    air = lung_field * (0.3 + texture) + 0.1 * trachea
    attenuation = 0.03 + body * (0.3 + 0.25 * body) - air
    bones = 0.08 * _ribs(rng, x, y) * (1 - 0.6 * central) + 0.04 * _spine(rng, x, y)
    attenuation += body * bones + 0.14 * _clavicles(rng, x, y) + lung_field * _vessels(rng, x, y)
    return attenuation, lung_field, lungs


def _body_thickness(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Torso superellipse with rounded shoulders, plus the neck; ~ tissue thickness, 0 in air."""
    half_width, top = rng.uniform(0.41, 0.47), rng.uniform(0.06, 0.1)
    ratio_x, ratio_y = np.abs(x / half_width), np.abs((y - top - 0.65) / 0.65)
    torso = np.sqrt(np.clip(1.0 - ratio_x * ratio_x * ratio_x - ratio_y * ratio_y * ratio_y, 0, 1))
    neck = smoothstep(0.11, 0.08, np.abs(x)) * smoothstep(top + 0.12, top, y)
    return np.maximum(torso, 0.6 * neck)


def _lung(rng, x: np.ndarray, y: np.ndarray, side: int, inspiration: float = 0.0) -> np.ndarray:
    """Soft field of one lung: rounded apex, widening base, diaphragm dome at the bottom.
    side -1 = image left (patient's right lung), +1 = image right (patient's left lung)."""
    patient_left = side > 0  # narrower (heart) and lower (no liver under it)
    half_width = rng.uniform(0.12, 0.15) * (0.93 if patient_left else 1.0)
    top, bottom = rng.uniform(0.14, 0.19), rng.uniform(0.72, 0.78) + (0.03 if patient_left else 0)
    bottom += inspiration
    centre, dome_height = rng.uniform(0.17, 0.2), rng.uniform(0.04, 0.08)
    depth = (y - top) / (bottom - top)  # 0 at the apex, 1 at the costophrenic angle
    base = np.clip(depth, 0.0, 1.0)
    apex = np.sqrt(np.clip(1.0 - (1.0 - np.minimum(depth / 0.45, 1.0)) ** 2, 0.0, 1.0))
    width = half_width * (0.85 + 0.3 * base) * apex + 1e-3
    lateral = side * x - (centre + 0.05 * base)  # signed distance from the lung's centre line
    dome = bottom - dome_height * np.clip(1 - ((lateral + 0.02) / (1.15 * half_width)) ** 2, 0, 1)
    inside = smoothstep(1.0, 0.85, np.abs(lateral) / width) * smoothstep(0.0, 0.015, dome - y)
    return inside * (depth > 0) * (0.8 + 0.2 * base)


def _mediastinum_and_heart(rng, x: np.ndarray, y: np.ndarray, magnification: float) -> np.ndarray:
    """Central soft-tissue shadow. The heart bulges to IMAGE RIGHT (patient left, PA view), so the
    film is not mirror-symmetric: a horizontal flip makes dextrocardia, not another normal film."""
    right_extent, left_extent = rng.uniform(0.2, 0.25), rng.uniform(0.07, 0.1)  # from midline
    right_extent, left_extent = right_extent * magnification, left_extent * magnification
    top, widest = rng.uniform(0.42, 0.47), rng.uniform(0.64, 0.69)
    descent = np.clip((y - top) / (widest - top), 0.0, 1.0)
    taper = 1.0 - 2.5 * np.maximum(y - widest, 0.0)  # apex curls in: a cardiophrenic angle shows
    left_border = right_extent * (0.3 + 0.7 * np.sqrt(descent * (2.0 - descent))) * taper
    bulge = np.maximum(1.0 - ((y - widest + 0.05) / 0.13) ** 2, 0.0)  # right atrium, image left
    reach = np.where(x > 0, left_border, left_extent * np.sqrt(bulge) + 1e-3)
    heart = smoothstep(1.05, 0.9, np.abs(x) / reach) * (y > top)
    column_width = 0.045 + 0.035 * np.clip(y, 0.0, 1.0)
    column = smoothstep(column_width + 0.012, column_width - 0.012, np.abs(x - 0.005))
    knob = smoothstep(0.0016, 0.0008, (x - 0.055) ** 2 + (y - rng.uniform(0.28, 0.33)) ** 2)
    return np.maximum(heart, np.maximum(column, knob))


def _spine(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertebral column seen faintly through the mediastinum, with darker disc spaces."""
    period = rng.uniform(0.045, 0.055)
    discs = 0.7 + 0.3 * np.cos(np.float32(2 * np.pi / period) * (y - rng.uniform(0, period)))
    return smoothstep(0.04, 0.028, np.abs(x)) * discs


def _ribs(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Posterior ribs as arches (rising from the spine, falling at the chest wall) plus fainter
    anterior ribs sloping down towards the sternum; both fade out below the diaphragm."""
    spacing, first = rng.uniform(0.05, 0.06), rng.uniform(0.07, 0.1)
    lateral = np.abs(x)
    sag = rng.uniform(1.4, 1.8) * lateral * lateral - 0.5 * lateral
    posterior = _bands((y - first + sag) / (spacing * (1 + 0.6 * y)), rng.uniform(0.38, 0.48))
    anterior = _bands((y - first - 0.22 + 0.55 * lateral) / (1.2 * spacing), 0.3)
    extent = smoothstep(0.02, 0.05, lateral) * smoothstep(0.47, 0.39, lateral)
    return (posterior + 0.35 * anterior) * extent * smoothstep(0.85, 0.7, y)


def _bands(phase: np.ndarray, bone_fraction: float) -> np.ndarray:
    """Ten flat-topped bands with soft edges, one per unit of phase."""
    position = np.clip((phase - np.floor(phase)) / bone_fraction, 0.0, 1.0)
    return np.sqrt(4.0 * position * (1.0 - position)) * ((phase >= 0) & (phase < 10))


def _clavicles(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two bony bands from the sternal notch out and up to the shoulders."""
    lateral = np.abs(x)
    centre_line = rng.uniform(0.16, 0.2) - 0.32 * lateral + 0.4 * lateral * lateral
    band = np.exp(-(((y - centre_line) / rng.uniform(0.012, 0.016)) ** 2))
    return band * smoothstep(0.03, 0.06, lateral) * smoothstep(0.38, 0.32, lateral)


def _vessels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hilar shadows and vascular markings radiating into each lung, fading to the periphery."""
    markings = np.zeros_like(x)
    for side in (-1, 1):
        across, down = side * x - 0.08, y - rng.uniform(0.4, 0.46)
        distance_squared = across * across + down * down
        direction = down / (np.abs(across) + np.abs(down) + 1e-6)  # cheap angle proxy in -1..1
        coarse = np.maximum(rng.standard_normal(24), 0.0)  # vessel strength per direction
        table = np.interp(np.linspace(0, 23, 400), np.arange(24), coarse).astype(np.float32)
        streaks = table[((direction + 1.0) * 199.5).astype(np.intp)]
        markings += 0.04 * streaks / (1 + 30 * distance_squared)  # Lorentzian: cheaper than exp
        markings += 0.06 / (1 + 400 * distance_squared)
    return markings


# --- pneumonia -----------------------------------------------------------------------------------


def draw_lesions(
    rng: np.random.Generator, lung_field: np.ndarray, core_level: float = CORE_LEVEL_DEEP
) -> np.ndarray:
    """1-3 fluffy consolidations in the lungs as a 0..1 level map (1 = each lesion's own peak),
    scaled until the area above 0.3 lies inside LESION_AREA_RANGE. Centres lie where the field
    exceeds `core_level` of its maximum: 0.7 keeps them deep in a lung, lower reaches the bases
    and (given the lungs' whole extent) the retrocardiac lung."""
    size = lung_field.shape[0]
    count = int(rng.integers(1, 4))
    target = rng.uniform(0.03, 0.06)
    radii = np.sqrt(rng.dirichlet(np.full(count, 3.0)) * target / np.pi)
    core = np.flatnonzero(lung_field > core_level * lung_field.max())
    centres = core[rng.integers(0, core.size, size=count)]
    layouts = [_blob_layout(rng, radius) for radius in radii]
    mottle = 0.6 + 0.4 * smoothstep(-1.5, 1.5, smooth_noise(rng, size, max(size // 6, 4)))
    scale, low, high = 1.0, LESION_AREA_RANGE[0] * 1.25, LESION_AREA_RANGE[1] * 0.85
    for _ in range(5):  # area ~ scale^2 until the lung edge clips it: 1-3 rounds
        level = _render_lesions(centres, layouts, scale, mottle, lung_field)
        area = float(np.mean((level > 0.3) & (lung_field > 0.5)))
        if low <= area <= high:
            break
        scale *= float(np.clip(np.sqrt(target / max(area, 1e-4)), 0.6, 1.6))
    return level


def _blob_layout(rng: np.random.Generator, radius: float) -> np.ndarray:
    """Rows of (row offset, col offset, row spread, col spread, weight) of one lesion's blobs."""
    count = int(rng.integers(4, 10))
    offsets = rng.normal(0.0, 0.5 * radius, size=(count, 2))
    spreads = rng.uniform(0.3, 0.6, size=(count, 2)) * radius
    return np.column_stack([offsets, spreads, rng.uniform(0.5, 1.0, size=count)]).astype(np.float32)


def _render_lesions(centres, layouts, scale: float, mottle, lung_field) -> np.ndarray:
    """Max over lesions of each lesion's peak-normalised, mottled, lung-clipped Gaussian cluster."""
    size = lung_field.shape[0]
    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    level = np.zeros_like(lung_field)
    for centre, layout in zip(centres, layouts, strict=True):
        row, col = (centre // size + 0.5) / size, (centre % size + 0.5) / size
        blobs = np.zeros_like(lung_field)
        for row_offset, col_offset, row_spread, col_spread, weight in layout:
            rows = np.exp(-0.5 * ((pixel - row - scale * row_offset) / (scale * row_spread)) ** 2)
            cols = np.exp(-0.5 * ((pixel - col - scale * col_offset) / (scale * col_spread)) ** 2)
            blobs += weight * np.outer(rows, cols)
        lesion = np.sqrt(blobs / max(float(blobs.max()), 1e-6)) * mottle * lung_field  # fluffy
        level = np.maximum(level, lesion / max(float(lesion.max()), 1e-6))
    return level
