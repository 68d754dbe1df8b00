"""Film physics for phantoms: resizing smooth fields, noise, blur, and exposure to uint8."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


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


def resize_field(image: np.ndarray, size: int, smooth: bool = False) -> np.ndarray:
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


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Roughly unit-variance noise varying over size/cells pixels (uneven fields, textures)."""
    return resize_field(rng.standard_normal((cells, cells), dtype=np.float32), size, smooth=True)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable blur from shifted slices: cheaper than a matmul for the small radii used here."""
    radius = max(1, int(3 * sigma + 0.5))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    height, width = image.shape
    padded = np.pad(image, radius, mode="edge")
    rows = sum(weight * padded[shift : shift + height, :] for shift, weight in enumerate(kernel))
    return sum(weight * rows[:, shift : shift + width] for shift, weight in enumerate(kernel))


def expose_film(
    rng: np.random.Generator,
    attenuation: np.ndarray,
    size: int,
    grain_range: tuple[float, float] = (0.03, 0.08),
) -> np.ndarray:
    """Attenuation -> uint8 film: random exposure and contrast, uneven field, blur, grain
    (`grain_range`: quantum noise, larger at lower dose), gamma."""
    render_size = attenuation.shape[0]
    pixel = np.linspace(-0.5, 0.5, render_size, dtype=np.float32)
    tilt = rng.normal(0.0, 0.04) * pixel[None, :] + rng.normal(0.0, 0.04) * pixel[:, None]
    uneven = 0.03 * smooth_noise(rng, render_size, 4) + tilt
    film = rng.uniform(0.42, 0.5) + rng.uniform(1.3, 1.6) * (attenuation - 0.35) + uneven
    film = resize_field(_gaussian_blur(film, rng.uniform(0.5, 1.0) * render_size / 256), size)
    grain = rng.random((size, size), dtype=np.float32)
    grain -= 0.5
    grain *= rng.uniform(*grain_range)
    film += grain
    np.clip(film, 0.0, 1.0, out=film)
    film *= 255.0
    film += 0.5
    image = film.astype(np.uint8)
    gamma_table = (np.linspace(0, 1, 256) ** rng.uniform(0.85, 1.15) * 255 + 0.5).astype(np.uint8)
    return gamma_table[image]


SITES = ("site_a", "site_b")


def process_for_site(rng: np.random.Generator, image: np.ndarray, site: int) -> np.ndarray:
    """Each site's own detector and post-processing. Site A: a plain film, a little darker or
    brighter. Site B: unsharp-mask edge enhancement and a flatter, brighter tone curve, as some
    vendors' default processing does; so a model can learn one site's look."""
    film = image.astype(np.float32)
    if site == 0:
        film += rng.normal(-6.0, 6.0)
    else:
        sigma = rng.uniform(0.02, 0.035) * image.shape[0]
        film += rng.uniform(0.5, 1.0) * (film - _gaussian_blur(film, sigma))
        film = 255.0 * (np.clip(film, 0, 255) / 255.0) ** rng.uniform(0.7, 0.85) + rng.normal(4, 4)
    return np.clip(film + 0.5, 0, 255).astype(np.uint8)
