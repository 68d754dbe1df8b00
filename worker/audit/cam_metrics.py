"""Scores for one explanation map against ground truth, against another map, or against the model.

Pure numpy (plus scipy.ndimage), one image at a time, maps already upsampled to the model input
(`shared.overlay.upsample_map`), masks already on model-input coordinates
(`worker.audit.mask_geometry`). `worker.audit.explanations` aggregates these over a data set.

- pointing game: is the map's peak inside the mask (Zhang et al. 2016)? Zhang et al. count a
  hit within 15 px of the annotation at 224 px input, because a map a few cells wide cannot
  place its peak more finely than a cell, and masks have soft edges; scaled to our input that
  is 4 px at 64 px. Both the tolerant (standard) and the strict (tolerance 0) game are reported.
- energy share: the fraction of the map's positive mass inside a mask ("energy-based pointing
  game", Wang et al. 2020, Score-CAM). The map is normalised to sum 1 first, so a map that is
  bright everywhere cannot score well by being bright.
- rank correlation and SSIM between two maps (the similarity measures of Adebayo et al. 2018).
- deletion: remove the most relevant pixels first and watch P(pneumonia) fall. Removed pixels
  are re-filled from their kept neighbours plus noise (ROAD, Rong et al. 2022): a black or
  blurred hole would itself be a strong, out-of-distribution feature, and its shape would leak
  which pixels were chosen.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage, stats

EPSILON = 1e-12
SSIM_SIGMA = 1.5  # Wang et al. 2004: Gaussian window, sigma 1.5 (11 x 11)
SSIM_TRUNCATE = 3.5
IMPUTATION_NOISE = 4.0  # grey levels of noise added to imputed pixels (ROAD's noisy imputation)
MINIMUM_SUPPORT = 1e-3  # below this weight of kept neighbours, fill with the kept pixels' mean
POINTING_TOLERANCE = 15 / 224  # Zhang et al. 2016: 15 px at 224 px input, as a fraction of the side
DELETION_FRACTIONS = tuple(round(0.05 * step, 2) for step in range(11))  # 0 .. 50 % removed


def energy_share(cam: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the positive map mass that falls inside `mask`; None for an all-zero map."""
    positive = np.clip(cam, 0.0, None).astype(np.float64)
    total = positive.sum()
    if total <= EPSILON:
        return None
    return float(positive[mask].sum() / total)


def pointing_tolerance(size: int) -> int:
    """The standard pointing-game tolerance in pixels for a `size` x `size` model input."""
    return int(round(POINTING_TOLERANCE * size))


def pointing_hit(cam: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """Whether the map's maximum (the first, on ties) lies inside `mask`, or within `tolerance`
    pixels (Euclidean) of it."""
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    if mask[peak] or tolerance <= 0 or not mask.any():
        return bool(mask[peak])
    rows, columns = np.nonzero(mask)
    distances = np.hypot(rows - peak[0], columns - peak[1])
    return bool(distances.min() <= tolerance)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float | None:
    """Spearman correlation of two maps' pixels; None when either map is constant (no ranking)."""
    first, second = first.ravel(), second.ravel()
    if np.ptp(first) <= EPSILON or np.ptp(second) <= EPSILON:
        return None
    first_ranks, second_ranks = stats.rankdata(first), stats.rankdata(second)
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def structural_similarity(first: np.ndarray, second: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, as skimage computes it."""
    first, second = first.astype(np.float64), second.astype(np.float64)

    def smooth(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, SSIM_SIGMA, truncate=SSIM_TRUNCATE)

    mean_first, mean_second = smooth(first), smooth(second)
    variance_first = smooth(first * first) - mean_first**2
    variance_second = smooth(second * second) - mean_second**2
    covariance = smooth(first * second) - mean_first * mean_second
    luminance_constant, contrast_constant = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    numerator = (2 * mean_first * mean_second + luminance_constant) * (
        2 * covariance + contrast_constant
    )
    denominator = (mean_first**2 + mean_second**2 + luminance_constant) * (
        variance_first + variance_second + contrast_constant
    )
    return float(np.mean(numerator / denominator))


def relevance_order(cam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, most relevant first; ties (the map's zeros) in random order, so a
    flat region is not removed row by row."""
    tie_breaker = rng.random(cam.size)
    return np.lexsort((tie_breaker, -cam.ravel()))


def random_order(size: int, rng: np.random.Generator) -> np.ndarray:
    """The baseline: pixels removed in an order that knows nothing about the model."""
    return rng.permutation(size)


def impute(image: np.ndarray, removed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-fill `removed` pixels by normalised convolution of the kept ones, plus noise."""
    values = image.astype(np.float64)
    kept = (~removed).astype(np.float64)
    sigma = max(1.0, image.shape[0] / 16)
    numerator = ndimage.gaussian_filter(values * kept, sigma)
    support = ndimage.gaussian_filter(kept, sigma)
    fallback = values[~removed].mean() if kept.any() else values.mean()
    fill = np.where(
        support > MINIMUM_SUPPORT, numerator / np.maximum(support, MINIMUM_SUPPORT), fallback
    )
    fill += rng.normal(0.0, IMPUTATION_NOISE, fill.shape)
    filled = np.where(removed, fill, values)
    return np.clip(np.rint(filled), 0, 255).astype(np.uint8)


def deletion_images(
    image: np.ndarray,
    order: np.ndarray,
    rng: np.random.Generator,
    fractions: Iterable[float] = DELETION_FRACTIONS,
) -> np.ndarray:
    """(F, S, S) uint8: `image` with the first `fraction` of `order` removed, per fraction."""
    steps = []
    for fraction in fractions:
        removed = np.zeros(image.size, dtype=bool)
        removed[order[: int(round(fraction * image.size))]] = True
        steps.append(impute(image, removed.reshape(image.shape), rng))
    return np.stack(steps)


def curve_area(fractions: Iterable[float], values: np.ndarray) -> float:
    """Trapezoid area under a deletion curve, divided by the x range: the curve's mean height,
    comparable between curves over the same fractions. Lower = the map found what mattered."""
    fractions = np.asarray(list(fractions), dtype=np.float64)
    heights = np.asarray(values, dtype=np.float64)
    widths = np.diff(fractions)
    area = float(np.sum(widths * (heights[1:] + heights[:-1]) / 2.0))
    return area / float(fractions[-1] - fractions[0])


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """The mean of the values that exist; None when none do (JSON null in audit.json)."""
    present = [value for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(present)) if present else None
