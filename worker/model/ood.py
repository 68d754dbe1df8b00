"""The out-of-distribution gate: is this image like the ones the model was trained on?

Both scores read the pooled `features` output (the trunk's last conv map averaged over space,
the vector the head starts from), which the worker's one compiled call returns beside the
logits and maps, so scoring costs a few numpy operations and no second model pass.

- `mahalanobis` (Lee et al. 2018): class-conditional Gaussians with one shared covariance,
  fitted on the training set; the score is the distance to the nearest class mean.
- `feature_norm`: how far the log of the vector's length lies from the training set's, in
  standard deviations (both directions: a blank page and a noise field are both foreign).

Higher is more foreign. The threshold is chosen on validation for a false-flag rate of at most
`TARGET_FALSE_FLAG_RATE`. The statistics live in `ood.npz` beside `model.keras`; the method,
threshold and their provenance in `model.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OOD_FILE = "ood.npz"
METHODS = ("mahalanobis", "feature_norm")
TARGET_FALSE_FLAG_RATE = 0.05
# Shrinks the shared covariance toward its mean variance: the pooled vector has as many
# dimensions as the last conv block has filters, often more than a small validation set.
COVARIANCE_SHRINKAGE = 0.1
NORM_EPSILON = 1e-6


@dataclass(frozen=True)
class OodStatistics:
    """Training-set statistics of the pooled features, for every method in METHODS."""

    class_means: np.ndarray  # (classes, channels) float64
    precision: np.ndarray  # (channels, channels) inverse of the shrunk shared covariance
    log_norm_mean: float
    log_norm_std: float

    def scores(self, pooled: np.ndarray, method: str) -> np.ndarray:
        """(B, channels) pooled features -> (B,) scores, higher = less like training data."""
        pooled = np.asarray(pooled, dtype=np.float64)
        if method == "mahalanobis":
            return self._mahalanobis(pooled)
        if method == "feature_norm":
            log_norms = np.log(np.linalg.norm(pooled, axis=1) + NORM_EPSILON)
            return np.abs(log_norms - self.log_norm_mean) / self.log_norm_std
        raise ValueError(f"OOD method must be one of {METHODS}, got {method!r}")

    def _mahalanobis(self, pooled: np.ndarray) -> np.ndarray:
        offsets = pooled[:, None, :] - self.class_means[None, :, :]  # (B, classes, channels)
        squared = np.einsum("bkc,cd,bkd->bk", offsets, self.precision, offsets)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


@dataclass(frozen=True)
class OodGate:
    """What the runtime serves with: the statistics, the chosen method and its threshold."""

    statistics: OodStatistics
    method: str
    threshold: float

    def assess(self, pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, flagged) for a batch of pooled feature vectors."""
        scores = self.statistics.scores(pooled, self.method)
        return scores, scores > self.threshold


def fit_statistics(pooled: np.ndarray, labels: np.ndarray) -> OodStatistics:
    """Class means and the shrunk within-class covariance of training-set pooled features."""
    pooled = np.asarray(pooled, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    classes = np.unique(labels)
    means = np.stack([pooled[labels == label].mean(axis=0) for label in classes])
    centred = pooled - means[np.searchsorted(classes, labels)]
    covariance = centred.T @ centred / max(len(pooled) - len(classes), 1)
    scale = max(float(np.trace(covariance)) / covariance.shape[0], NORM_EPSILON)
    shrunk = (1 - COVARIANCE_SHRINKAGE) * covariance
    shrunk += COVARIANCE_SHRINKAGE * scale * np.eye(covariance.shape[0])
    log_norms = np.log(np.linalg.norm(pooled, axis=1) + NORM_EPSILON)
    return OodStatistics(
        class_means=means,
        precision=np.linalg.inv(shrunk),
        log_norm_mean=float(log_norms.mean()),
        log_norm_std=max(float(log_norms.std()), NORM_EPSILON),
    )


def choose_threshold(validation_scores: np.ndarray, target: float = TARGET_FALSE_FLAG_RATE):
    """The smallest validation score with at most `target` of validation strictly above it:
    in-distribution images are flagged (score > threshold) at a rate of at most `target`."""
    return float(np.quantile(np.asarray(validation_scores), 1.0 - target, method="higher"))


def flag_rate(scores: np.ndarray, threshold: float) -> float:
    scores = np.asarray(scores)
    return float(np.mean(scores > threshold)) if scores.size else 0.0


def save_statistics(statistics: OodStatistics, directory: Path) -> Path:
    path = directory / OOD_FILE
    with path.open("wb") as handle:  # a handle, so numpy does not append its own suffix
        np.savez(
            handle,
            class_means=statistics.class_means,
            precision=statistics.precision,
            log_norm=np.array([statistics.log_norm_mean, statistics.log_norm_std]),
        )
    return path


def load_statistics(path: Path) -> OodStatistics:
    with np.load(path, allow_pickle=False) as arrays:
        log_norm_mean, log_norm_std = (float(value) for value in arrays["log_norm"])
        return OodStatistics(
            class_means=arrays["class_means"].astype(np.float64),
            precision=arrays["precision"].astype(np.float64),
            log_norm_mean=log_norm_mean,
            log_norm_std=log_norm_std,
        )
