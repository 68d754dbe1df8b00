"""Synthetic chest radiograph phantoms with ground-truth masks, in the public Kermany layout.

Owns: drawing one PA chest "film" (body, lungs, mediastinum, heart to IMAGE RIGHT, ribs, clavicles,
diaphragm), pneumonia-like consolidations with a lesion mask, optional scanner artefacts that can be
made to correlate with the label (the seed project's border shortcut), writing whole datasets, and
large JPEGs for throughput benchmarks. No real radiographs can be downloaded here, so tests, the
demo model and the Grad-CAM audit use these. Pure numpy + Pillow so the worker image stays small.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

GENERATOR_VERSION = "1.0.0"
MANIFEST_NAME = "manifest.json"  # its presence marks a folder as synthetic
ARTIFACTS = ("border_band", "padding", "corner_marker")
SPLITS = ("train", "val", "test")
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # index = label
LESION_AREA_RANGE = (0.02, 0.08)  # total lesion-mask area of a PNEUMONIA phantom, image fraction
BORDER_BAND_WIDTH = 0.06
PADDING_WIDTH_RANGE = (0.08, 0.12)
FILM_GRAIN_SIGMA = 2.5  # grey levels of per-pixel grain on benchmark JPEGs
MARKER_BOX = (0.03, 0.13, 0.85, 0.96)  # top, bottom, left, right as fractions of the side
_GLYPHS = {  # 5x7 laterality letters, as on the lead markers technologists put on films
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8 (size, size) grayscale radiograph
    lung_mask: np.ndarray  # bool (size, size): both lung fields
    lesion_mask: np.ndarray  # bool (size, size): consolidations (all False for NORMAL)
    label: int  # 1 = PNEUMONIA, 0 = NORMAL
    artifact: str | None  # which artefact was drawn, if any


def generate_phantom(
    rng: np.random.Generator, size: int = 256, *, pneumonia: bool, artifact: str | None = None
) -> Phantom:
    """One phantom; the same seed gives the same bytes. Anatomy, lesions, film and artefact use
    separate child generators, so with one seed a NORMAL and a PNEUMONIA phantom differ only by the
    lesion and an artefact changes only its own band: paired (counterfactual) studies come free."""
    if artifact is not None and artifact not in ARTIFACTS:
        raise ValueError(f"artifact must be one of {ARTIFACTS} or None, got {artifact!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    anatomy_rng, lesion_rng, film_rng, artifact_rng = rng.spawn(4)
    render_size = size if size <= 160 else (size + 1) // 2  # smooth content: half res is plenty
    attenuation, lung_field = _draw_anatomy(anatomy_rng, render_size)
    lesion_level = _draw_lesions(lesion_rng, lung_field) if pneumonia else None
    if lesion_level is not None:
        attenuation += lesion_rng.uniform(0.24, 0.34) * lesion_level
    image = _expose_film(film_rng, attenuation, size)
    lung_mask = _resize(lung_field, size) > 0.5
    lesion_mask = np.zeros_like(lung_mask)
    if lesion_level is not None:
        lesion_mask = (_resize(lesion_level, size) > 0.3) & lung_mask
    if artifact is not None:
        covered = _draw_artifact(artifact_rng, image, artifact)
        lung_mask &= ~covered
        lesion_mask &= ~covered
    return Phantom(image, lung_mask, lesion_mask, int(pneumonia), artifact)


# --- anatomy (all in attenuation units: 0 = air, larger = denser = brighter on the film) ----------


def _smoothstep(edge0: float, edge1: float, value: np.ndarray) -> np.ndarray:
    """0 before edge0, 1 beyond edge1, smooth between (edge0 > edge1 gives a falling edge)."""
    t = value - edge0  # in place from here: this runs ~20 times per phantom
    t *= 1.0 / (edge1 - edge0)
    np.clip(t, 0.0, 1.0, out=t)
    shape = t * -2.0
    shape += 3.0
    shape *= t
    shape *= t
    return shape


def _anatomy_grid(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in patient units: x across (0 = midline), y down (0 top, 1 bottom of film)."""
    pixel = (np.arange(size, dtype=np.float32) + 0.5) / size
    scale = rng.uniform(0.9, 1.04)
    across = (pixel[None, :] - 0.5 - rng.normal(0.0, 0.015)) / scale
    down = (pixel[:, None] - 0.5 - rng.normal(0.0, 0.02)) / scale
    angle = np.deg2rad(rng.normal(0.0, 1.5))  # patients never stand perfectly straight
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return across * cos + down * sin, down * cos - across * sin + np.float32(0.5)


def _draw_anatomy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation map and soft lung field (1 = aerated lung, 0 = anything else)."""
    x, y = _anatomy_grid(rng, size)
    body = _body_thickness(rng, x, y)
    central = _mediastinum_and_heart(rng, x, y)
    lung_field = np.maximum(_lung(rng, x, y, side=-1), _lung(rng, x, y, side=1)) * (1 - central)
    texture = 0.04 * _smooth_noise(rng, size, 6) + 0.02 * _smooth_noise(rng, size, size // 6)
    trachea = _smoothstep(0.024, 0.014, np.abs(x)) * _smoothstep(0.38, 0.33, y)  # air, to carina
    air = lung_field * (0.3 + texture) + 0.1 * trachea
    attenuation = 0.03 + body * (0.3 + 0.25 * body) - air
    bones = 0.08 * _ribs(rng, x, y) * (1 - 0.6 * central) + 0.04 * _spine(rng, x, y)
    attenuation += body * bones + 0.14 * _clavicles(rng, x, y) + lung_field * _vessels(rng, x, y)
    return attenuation, lung_field


def _body_thickness(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Torso superellipse with rounded shoulders, plus the neck; ~ tissue thickness, 0 in air."""
    half_width, top = rng.uniform(0.41, 0.47), rng.uniform(0.06, 0.1)
    ratio_x, ratio_y = np.abs(x / half_width), np.abs((y - top - 0.65) / 0.65)
    torso = np.sqrt(np.clip(1.0 - ratio_x * ratio_x * ratio_x - ratio_y * ratio_y * ratio_y, 0, 1))
    neck = _smoothstep(0.11, 0.08, np.abs(x)) * _smoothstep(top + 0.12, top, y)
    return np.maximum(torso, 0.6 * neck)


def _lung(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    """Soft field of one lung: rounded apex, widening base, diaphragm dome at the bottom.
    side -1 = image left (patient's right lung), +1 = image right (patient's left lung)."""
    patient_left = side > 0  # narrower (heart) and lower (no liver under it)
    half_width = rng.uniform(0.12, 0.15) * (0.93 if patient_left else 1.0)
    top, bottom = rng.uniform(0.14, 0.19), rng.uniform(0.72, 0.78) + (0.03 if patient_left else 0)
    centre, dome_height = rng.uniform(0.17, 0.2), rng.uniform(0.04, 0.08)
    depth = (y - top) / (bottom - top)  # 0 at the apex, 1 at the costophrenic angle
    base = np.clip(depth, 0.0, 1.0)
    apex = np.sqrt(np.clip(1.0 - (1.0 - np.minimum(depth / 0.45, 1.0)) ** 2, 0.0, 1.0))
    width = half_width * (0.85 + 0.3 * base) * apex + 1e-3
    lateral = side * x - (centre + 0.05 * base)  # signed distance from the lung's centre line
    dome = bottom - dome_height * np.clip(1 - ((lateral + 0.02) / (1.15 * half_width)) ** 2, 0, 1)
    inside = _smoothstep(1.0, 0.85, np.abs(lateral) / width) * _smoothstep(0.0, 0.015, dome - y)
    return inside * (depth > 0) * (0.8 + 0.2 * base)


def _mediastinum_and_heart(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Central soft-tissue shadow. The heart bulges to IMAGE RIGHT (patient left, PA view), so the
    film is not mirror-symmetric: a horizontal flip makes dextrocardia, not another normal film."""
    right_extent, left_extent = rng.uniform(0.2, 0.25), rng.uniform(0.07, 0.1)  # from midline
    top, widest = rng.uniform(0.42, 0.47), rng.uniform(0.64, 0.69)
    descent = np.clip((y - top) / (widest - top), 0.0, 1.0)
    taper = 1.0 - 2.5 * np.maximum(y - widest, 0.0)  # apex curls in: a cardiophrenic angle shows
    left_border = right_extent * (0.3 + 0.7 * np.sqrt(descent * (2.0 - descent))) * taper
    bulge = np.maximum(1.0 - ((y - widest + 0.05) / 0.13) ** 2, 0.0)  # right atrium, image left
    reach = np.where(x > 0, left_border, left_extent * np.sqrt(bulge) + 1e-3)
    heart = _smoothstep(1.05, 0.9, np.abs(x) / reach) * (y > top)
    column_width = 0.045 + 0.035 * np.clip(y, 0.0, 1.0)
    column = _smoothstep(column_width + 0.012, column_width - 0.012, np.abs(x - 0.005))
    knob = _smoothstep(0.0016, 0.0008, (x - 0.055) ** 2 + (y - rng.uniform(0.28, 0.33)) ** 2)
    return np.maximum(heart, np.maximum(column, knob))


def _spine(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertebral column seen faintly through the mediastinum, with darker disc spaces."""
    period = rng.uniform(0.045, 0.055)
    discs = 0.7 + 0.3 * np.cos(np.float32(2 * np.pi / period) * (y - rng.uniform(0, period)))
    return _smoothstep(0.04, 0.028, np.abs(x)) * discs


def _ribs(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Posterior ribs as arches (rising from the spine, falling at the chest wall) plus fainter
    anterior ribs sloping down towards the sternum; both fade out below the diaphragm."""
    spacing, first = rng.uniform(0.05, 0.06), rng.uniform(0.07, 0.1)
    lateral = np.abs(x)
    sag = rng.uniform(1.4, 1.8) * lateral * lateral - 0.5 * lateral
    posterior = _bands((y - first + sag) / (spacing * (1 + 0.6 * y)), rng.uniform(0.38, 0.48))
    anterior = _bands((y - first - 0.22 + 0.55 * lateral) / (1.2 * spacing), 0.3)
    extent = _smoothstep(0.02, 0.05, lateral) * _smoothstep(0.47, 0.39, lateral)
    return (posterior + 0.35 * anterior) * extent * _smoothstep(0.85, 0.7, y)


def _bands(phase: np.ndarray, bone_fraction: float) -> np.ndarray:
    """Ten flat-topped bands with soft edges, one per unit of phase."""
    position = np.clip((phase - np.floor(phase)) / bone_fraction, 0.0, 1.0)
    return np.sqrt(4.0 * position * (1.0 - position)) * ((phase >= 0) & (phase < 10))


def _clavicles(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two bony bands from the sternal notch out and up to the shoulders."""
    lateral = np.abs(x)
    centre_line = rng.uniform(0.16, 0.2) - 0.32 * lateral + 0.4 * lateral * lateral
    band = np.exp(-(((y - centre_line) / rng.uniform(0.012, 0.016)) ** 2))
    return band * _smoothstep(0.03, 0.06, lateral) * _smoothstep(0.38, 0.32, lateral)


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


def _draw_lesions(rng: np.random.Generator, lung_field: np.ndarray) -> np.ndarray:
    """1-3 fluffy consolidations in the lungs as a 0..1 level map (1 = each lesion's own peak),
    scaled until the area above 0.3 lies inside LESION_AREA_RANGE."""
    size = lung_field.shape[0]
    count = int(rng.integers(1, 4))
    target = rng.uniform(0.03, 0.06)
    radii = np.sqrt(rng.dirichlet(np.full(count, 3.0)) * target / np.pi)
    core = np.flatnonzero(lung_field > 0.7 * lung_field.max())  # well inside a lung, any lobe
    centres = core[rng.integers(0, core.size, size=count)]
    layouts = [_blob_layout(rng, radius) for radius in radii]
    mottle = 0.6 + 0.4 * _smoothstep(-1.5, 1.5, _smooth_noise(rng, size, max(size // 6, 4)))
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


# --- film ----------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _interpolation(source: int, target: int, smooth: bool) -> tuple[np.ndarray, ...]:
    """Neighbour indices and weights for resizing one axis. Linear for images; smoothstep weights
    for noise, so upsampled noise shows no diamond grid."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    lower = np.minimum(np.floor(position).astype(np.intp), max(source - 2, 0))
    fraction = (position - lower).astype(np.float32)
    if smooth:
        fraction = fraction * fraction * (3 - 2 * fraction)
    return lower, np.minimum(lower + 1, source - 1), fraction


def _resize(image: np.ndarray, size: int, smooth: bool = False) -> np.ndarray:
    """Square float image to (size, size) by separable interpolation (no BLAS threads involved)."""
    if image.shape[0] == size:
        return image
    lower, upper, fraction = _interpolation(image.shape[0], size, smooth)
    rows, next_rows = image[lower], image[upper]
    next_rows -= rows  # in place: every full-size temporary costs page faults, not just flops
    next_rows *= fraction[:, None]
    rows += next_rows
    left, right = np.take(rows, lower, axis=1), np.take(rows, upper, axis=1)
    right -= left
    right *= fraction
    left += right
    return left


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Roughly unit-variance noise varying over size/cells pixels (uneven fields, textures)."""
    return _resize(rng.standard_normal((cells, cells), dtype=np.float32), size, smooth=True)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable blur from shifted slices: cheaper than a matmul for the small radii used here."""
    radius = max(1, int(3 * sigma + 0.5))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    height, width = image.shape
    padded = np.pad(image, radius, mode="edge")
    rows = sum(weight * padded[shift : shift + height, :] for shift, weight in enumerate(kernel))
    return sum(weight * rows[:, shift : shift + width] for shift, weight in enumerate(kernel))


def _expose_film(rng: np.random.Generator, attenuation: np.ndarray, size: int) -> np.ndarray:
    """Attenuation -> uint8 film: random exposure and contrast, uneven field, blur, grain, gamma."""
    render_size = attenuation.shape[0]
    pixel = np.linspace(-0.5, 0.5, render_size, dtype=np.float32)
    tilt = rng.normal(0.0, 0.04) * pixel[None, :] + rng.normal(0.0, 0.04) * pixel[:, None]
    uneven = 0.03 * _smooth_noise(rng, render_size, 4) + tilt
    film = rng.uniform(0.42, 0.5) + rng.uniform(1.3, 1.6) * (attenuation - 0.35) + uneven
    film = _resize(_gaussian_blur(film, rng.uniform(0.5, 1.0) * render_size / 256), size)
    grain = rng.random((size, size), dtype=np.float32)
    grain -= 0.5
    grain *= rng.uniform(0.03, 0.08)
    film += grain
    np.clip(film, 0.0, 1.0, out=film)
    film *= 255.0
    film += 0.5
    image = film.astype(np.uint8)
    gamma_table = (np.linspace(0, 1, 256) ** rng.uniform(0.85, 1.15) * 255 + 0.5).astype(np.uint8)
    return gamma_table[image]


# --- artefacts -----------------------------------------------------------------------------------


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


def _draw_artifact(rng: np.random.Generator, image: np.ndarray, artifact: str) -> np.ndarray:
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


# --- datasets and benchmark files ----------------------------------------------------------------


@dataclass(frozen=True)
class _Patient:
    patient_id: int
    label: int
    image_count: int
    pathogen: str  # "bacteria" or "virus" in PNEUMONIA filenames, "" for NORMAL


def write_kermany_dataset(
    out_dir: Path,
    *,
    count: int,
    size: int = 256,
    seed: int = 0,
    prevalence: float = 0.5,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    artifact: str | None = None,
    artifact_correlation: float = 0.0,
    image_format: str = "png",
    images_per_patient: tuple[int, int] | int = (1, 3),
) -> dict:
    """Write `count` phantoms in the public Kermany layout and return the manifest.

    Layout: out_dir/{train,val,test}/{NORMAL,PNEUMONIA}/<stem>.png (or .jpeg), Kermany-style stems
    carrying a patient id (`person{pid}_{bacteria|virus}_{n}`, `NORMAL2-IM-{pid:04d}-{n:04d}`),
    0/255 masks at out_dir/masks/{split}/{CLASS}/<stem>_{lung,lesion}.png, and out_dir/manifest.json
    (generator version, seed, arguments, one entry per image). Patients, not images, draw the label
    (probability `prevalence`) and an image count in `images_per_patient` (a (min, max) range, or an
    int for exactly that many); a patient's images share label and split, and splits are filled per
    class by image count: patient-disjoint and stratified.

    Artefacts: with `artifact` set and correlation c, each train/val image is, with probability c,
    a "shortcut" image (artefact drawn iff PNEUMONIA); otherwise, and always in test, the artefact
    is drawn on a random 50% of images regardless of label. So c = 1 makes the artefact a perfect
    label proxy in train/val that fails in test, and c = 0 leaves it uninformative everywhere.
    Refuses a non-empty `out_dir`, so stale files never sit beside a new manifest.
    """
    if isinstance(images_per_patient, int):
        images_per_patient = (images_per_patient, images_per_patient)
    arguments = {name: value for name, value in locals().items() if name != "out_dir"}
    arguments |= {
        "split_fractions": list(split_fractions),
        "images_per_patient": list(images_per_patient),
    }
    _check_dataset_arguments(arguments)
    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    if out_dir.exists() and any(out_dir.iterdir()):  # stale files would contradict the manifest
        raise FileExistsError(f"write_kermany_dataset: {out_dir} is not empty")
    patients = _plan_patients(rng, count, prevalence, images_per_patient)
    files: list[dict] = []
    for patient, split in zip(patients, _assign_splits(patients, split_fractions), strict=True):
        for number in range(1, patient.image_count + 1):
            drawn = _artifact_for(rng, artifact, artifact_correlation, split, patient.label)
            phantom_rng = np.random.default_rng([seed, len(files)])  # one stream per image
            phantom = generate_phantom(
                phantom_rng, size, pneumonia=patient.label == 1, artifact=drawn
            )
            stem = _kermany_stem(patient, number, len(files) + 1)
            files.append(_write_sample(out_dir, split, stem, phantom, image_format))
            files[-1]["patient_id"] = patient.patient_id
    manifest = {"generator": __name__, "version": GENERATOR_VERSION, "synthetic": True}
    manifest |= {"seed": seed, "args": arguments, "counts": _counts(files), "files": files}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return manifest


def _check_dataset_arguments(arguments: dict) -> None:
    """Fail before anything is written, naming the argument and its bad value."""
    fractions, (fewest, most) = arguments["split_fractions"], arguments["images_per_patient"]
    valid = {
        "count": arguments["count"] >= 1,
        "size": arguments["size"] >= 32,
        "prevalence": 0 <= arguments["prevalence"] <= 1,
        "split_fractions": len(fractions) == 3 and min(fractions) >= 0 and sum(fractions) > 0,
        "artifact": arguments["artifact"] in (None, *ARTIFACTS),
        "artifact_correlation": 0 <= arguments["artifact_correlation"] <= 1,
        "image_format": arguments["image_format"] in ("png", "jpeg"),
        "images_per_patient": 1 <= fewest <= most,
    }
    for name, ok in valid.items():
        if not ok:
            raise ValueError(f"write_kermany_dataset: invalid {name}={arguments[name]!r}")


def _plan_patients(rng, count: int, prevalence: float, images_per_patient) -> list[_Patient]:
    """Patients with a label and an image count, until exactly `count` images are planned."""
    patients: list[_Patient] = []
    remaining, (fewest, most) = count, images_per_patient
    while remaining > 0:
        image_count = min(int(rng.integers(fewest, most + 1)), remaining)
        label = int(rng.random() < prevalence)
        pathogen = ("bacteria" if rng.random() < 0.65 else "virus") if label else ""
        patients.append(_Patient(len(patients) + 1, label, image_count, pathogen))
        remaining -= image_count
    return patients


def _assign_splits(patients: list[_Patient], split_fractions) -> list[str]:
    """Each patient joins the split of its class furthest below its share of images: patient-
    disjoint, stratified, and the small splits get someone as early as possible."""
    fractions = np.asarray(split_fractions, dtype=float) / sum(split_fractions)
    taken = {0: np.zeros(len(SPLITS)), 1: np.zeros(len(SPLITS))}
    splits = []
    for patient in patients:
        images = taken[patient.label]
        index = int(np.argmax(fractions * (images.sum() + patient.image_count) - images))
        images[index] += patient.image_count
        splits.append(SPLITS[index])
    return splits


def _artifact_for(rng, artifact: str | None, correlation: float, split: str, label: int):
    """The shortcut policy documented in write_kermany_dataset."""
    if artifact is None:
        return None
    shortcut = split != "test" and rng.random() < correlation
    drawn = bool(label) if shortcut else rng.random() < 0.5
    return artifact if drawn else None


def _counts(files: list[dict]) -> dict:
    """Images per split and class, e.g. {"train": {"NORMAL": 10, "PNEUMONIA": 11}, ...}."""
    counts = {split: dict.fromkeys(CLASS_NAMES, 0) for split in SPLITS}
    for entry in files:
        counts[entry["split"]][entry["class_name"]] += 1
    return counts


def _kermany_stem(patient: _Patient, number: int, running_number: int) -> str:
    if patient.label:
        return f"person{patient.patient_id}_{patient.pathogen}_{running_number}"
    return f"NORMAL2-IM-{patient.patient_id:04d}-{number:04d}"


def _write_sample(out_dir: Path, split: str, stem: str, phantom: Phantom, image_format: str):
    """Write the image and its two masks; return the manifest entry (paths relative to out_dir)."""
    class_name = CLASS_NAMES[phantom.label]
    image_path = out_dir / split / class_name / f"{stem}.{image_format}"
    mask_dir = out_dir / "masks" / split / class_name
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if image_format == "jpeg" else {"compress_level": 3}
    Image.fromarray(phantom.image).save(image_path, format=image_format.upper(), **options)
    entry: dict[str, object] = {"path": image_path.relative_to(out_dir).as_posix(), "split": split}
    entry |= {"label": phantom.label, "class_name": class_name, "artifact": phantom.artifact}
    for kind, mask in (("lung", phantom.lung_mask), ("lesion", phantom.lesion_mask)):
        mask_path = mask_dir / f"{stem}_{kind}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=3)
        entry[f"{kind}_mask"] = mask_path.relative_to(out_dir).as_posix()
    return entry


def render_large_jpeg(
    phantom: Phantom, rng: np.random.Generator, side: int = 1500, quality: int = 90
) -> bytes:
    """The phantom as a realistic-size film JPEG for decode and throughput benchmarks: bicubic
    upscale plus fine film grain. The grain is calibrated so files weigh about what Kermany's do
    (5,856 JPEGs of ~1,000-2,000 px in ~1.2 GB: ~200 KB each); 1,500 px gives ~250-300 KB."""
    upscaled = Image.fromarray(phantom.image).resize((side, side), Image.Resampling.BICUBIC)
    grain = rng.standard_normal((side, side), dtype=np.float32) * FILM_GRAIN_SIGMA
    film = np.clip(np.asarray(upscaled, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(film).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
