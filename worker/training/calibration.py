"""Platt scaling: the served P(pneumonia) is sigmoid(slope x logit + intercept), both fitted on
the validation logits.

Why two parameters: training weighs the classes by inverse frequency, which moves the logit by
log(n_normal / n_pneumonia) (about -1 on Kermany's balance). Temperature scaling (a slope only)
cannot move it back; the intercept does.

Why guarded: when the validation logits separate the classes, the likelihood keeps rising as the
slope grows, and the unguarded answer is "p = 1.000 for everything" (the demo's T = 0.12). Two
guards, both standard and both weak enough to vanish on a few hundred overlapping cases:

- Platt's (1999) target smoothing: fit to (n+ + 1) / (n+ + 2) and 1 / (n- + 2) instead of 1 and 0.
  n validation cases without an error cannot justify an error rate far below 1 / (n + 2).
- A Gaussian prior on (slope - 1, intercept) worth PRIOR_STRENGTH validation images. It makes the
  problem strictly convex, so equal or nearly equal logits still give one answer.

Separable validation data is flagged (`guard = "regularised"`): the guards, not the data, then set
the slope. A fit that cannot be served (one class only, a slope that would flatten or invert the
ranking) falls back to the identity (`guard = "fallback"`), with the reason in the card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.model_card import Calibration
from worker.training import classification_metrics as metrics

PRIOR_STRENGTH = 1.0  # in validation images: a nudge, not an opinion
MIN_SLOPE = 1e-3  # below this the logit no longer ranks validation cases at all
NEWTON_STEPS = 100
METHOD = "Platt scaling on validation logits (target smoothing; prior toward slope 1, intercept 0)"


@dataclass(frozen=True)
class PlattFit:
    slope: float
    intercept: float
    converged: bool


def smoothed_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's targets: a Laplace estimate of each class's rate instead of a hard 0 or 1."""
    labels = np.asarray(labels).astype(int)
    positives = int(labels.sum())
    negatives = labels.size - positives
    return np.where(labels == 1, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))


def penalised_nll(
    parameters: np.ndarray, logits: np.ndarray, targets: np.ndarray, prior_strength: float
) -> float:
    """Summed cross-entropy of sigmoid(slope x logit + intercept) plus the Gaussian prior."""
    slope, intercept = parameters
    scores = slope * logits + intercept
    data_term = np.sum(np.logaddexp(0.0, scores) - targets * scores)
    return float(data_term + prior_strength / 2.0 * ((slope - 1.0) ** 2 + intercept**2))


def _newton_step(parameters, logits, targets, prior_strength) -> np.ndarray:
    slope, intercept = parameters
    probabilities = metrics.sigmoid(slope * logits + intercept)
    residuals, weights = probabilities - targets, probabilities * (1.0 - probabilities)
    gradient = np.array([residuals @ logits, residuals.sum()])
    gradient += prior_strength * np.array([slope - 1.0, intercept])
    hessian = np.array(
        [[weights @ logits**2, weights @ logits], [weights @ logits, weights.sum()]]
    ) + prior_strength * np.eye(2)
    return np.linalg.lstsq(hessian, gradient, rcond=None)[0]


def fit_platt(
    labels: np.ndarray,
    logits: np.ndarray,
    *,
    smoothing: bool = True,
    prior_strength: float = PRIOR_STRENGTH,
) -> PlattFit:
    """Newton's method with step halving on the (convex) penalised NLL. With smoothing off and
    no prior it is plain logistic regression on the logit, as scikit-learn's unpenalised fit."""
    logits = np.asarray(logits, float)
    targets = smoothed_targets(labels) if smoothing else np.asarray(labels, float)
    parameters = np.array([1.0, 0.0])
    loss = penalised_nll(parameters, logits, targets, prior_strength)
    for _ in range(NEWTON_STEPS):
        step = _newton_step(parameters, logits, targets, prior_strength)
        scale = 1.0
        # Halve until the loss stops rising: Newton overshoots where the sigmoid saturates.
        while scale > 1e-8:
            candidate = parameters - scale * step
            candidate_loss = penalised_nll(candidate, logits, targets, prior_strength)
            if candidate_loss <= loss:
                break
            scale /= 2.0
        else:
            return PlattFit(float(parameters[0]), float(parameters[1]), converged=True)
        parameters, improvement, loss = candidate, loss - candidate_loss, candidate_loss
        if np.max(np.abs(scale * step)) < 1e-10 or improvement < 1e-12 * max(1.0, loss):
            return PlattFit(float(parameters[0]), float(parameters[1]), converged=True)
    return PlattFit(float(parameters[0]), float(parameters[1]), converged=False)


def separates(labels: np.ndarray, logits: np.ndarray) -> bool:
    """True when every PNEUMONIA logit is above every NORMAL one (or one class is absent)."""
    labels, logits = np.asarray(labels), np.asarray(logits, float)
    positives, negatives = logits[labels == 1], logits[labels != 1]
    return bool(positives.size == 0 or negatives.size == 0 or negatives.max() < positives.min())


def fit_calibration(labels: np.ndarray, logits: np.ndarray) -> Calibration:
    """The guarded Platt fit as the card records it."""
    labels, logits = np.asarray(labels).astype(int), np.asarray(logits, float)
    if labels.size == 0 or labels.min() == labels.max():
        return _fallback("validation holds one class only, so no calibration can be fitted")
    fit = fit_platt(labels, logits)
    if not (fit.converged and np.isfinite([fit.slope, fit.intercept]).all()):
        return _fallback("the Platt fit did not converge")
    if fit.slope < MIN_SLOPE:
        return _fallback(
            f"the fitted slope {fit.slope:.3g} is not positive: the validation logits do not "
            "rank the classes, and a calibration would flatten or invert every answer"
        )
    if not separates(labels, logits):
        return Calibration(method=METHOD, slope=fit.slope, intercept=fit.intercept)
    return Calibration(
        method=METHOD,
        slope=fit.slope,
        intercept=fit.intercept,
        guard="regularised",
        reason=(
            f"the validation logits separate the classes ({labels.size} images, none "
            "misordered), so the unguarded fit has no finite slope; target smoothing and the "
            f"prior held it at {fit.slope:.3g}"
        ),
    )


def _fallback(reason: str) -> Calibration:
    return Calibration(method="identity (fallback)", guard="fallback", reason=reason)


def calibrated_logits(calibration: Calibration, logits: np.ndarray) -> np.ndarray:
    return calibration.slope * np.asarray(logits, float) + calibration.intercept


def calibration_report(labels: np.ndarray, logits: np.ndarray, calibration: Calibration) -> dict:
    """Validation NLL, ECE and reliability bins before (sigmoid of the raw logit) and after."""
    scaled = calibrated_logits(calibration, logits)
    before, after = metrics.sigmoid(logits), metrics.sigmoid(scaled)
    return {
        "validation_images": int(np.asarray(labels).size),
        "validation_separable": separates(labels, logits),
        "validation_nll": {
            "before": metrics.binary_nll(labels, logits),
            "after": metrics.binary_nll(labels, scaled),
        },
        "validation_ece": {
            "before": metrics.expected_calibration_error(labels, before),
            "after": metrics.expected_calibration_error(labels, after),
        },
        "reliability": {
            "before": metrics.reliability_bins(labels, before),
            "after": metrics.reliability_bins(labels, after),
        },
    }


def calibrate(labels: np.ndarray, logits: np.ndarray) -> tuple[Calibration, dict]:
    calibration = fit_calibration(labels, logits)
    return calibration, calibration_report(labels, logits, calibration)
