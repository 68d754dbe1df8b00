"""Binary classification metrics in plain numpy: the numbers in model.json and every report.

Label convention: 1 = PNEUMONIA (positive), 0 = NORMAL. `scores` are P(pneumonia) or logits
(anything monotone); a score at or above the threshold is called PNEUMONIA, as the worker does.
Curves and AUCs follow scikit-learn's definitions, and the unit tests hold them to it. No
TensorFlow here (scipy only for the beta quantiles of exact intervals), so evaluation and tests
can use these without loading a model.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

THRESHOLD_METRICS = ("accuracy", "precision", "recall", "specificity", "f1")
RANKING_METRICS = ("roc_auc", "pr_auc")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[[TN, FP], [FN, TP]]: scikit-learn's layout (rows = truth, columns = prediction)."""
    labels, predicted = np.asarray(labels, bool), np.asarray(predicted, bool)
    true_positive = int(np.sum(labels & predicted))
    false_positive = int(np.sum(~labels & predicted))
    false_negative = int(np.sum(labels & ~predicted))
    true_negative = int(np.sum(~labels & ~predicted))
    return np.array([[true_negative, false_positive], [false_negative, true_positive]])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def rates_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts; works on scalars or arrays of resamples."""
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * recall, precision + recall),
    }


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity and F1 at one operating point."""
    (tn, fp), (fn, tp) = confusion_matrix(labels, np.asarray(scores) >= threshold)
    return {name: float(value) for name, value in rates_from_counts(tp, fp, fn, tn).items()}


def _cumulative_counts(labels: np.ndarray, scores: np.ndarray):
    """True and false positives above each distinct score, highest score first."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores, sorted_labels = np.asarray(scores)[order], np.asarray(labels, float)[order]
    # The last index of each run of tied scores: ties enter the curve together.
    distinct = np.flatnonzero(np.diff(sorted_scores))
    cut_indices = np.r_[distinct, sorted_labels.size - 1]
    true_positives = np.cumsum(sorted_labels)[cut_indices]
    false_positives = 1 + cut_indices - true_positives
    return false_positives, true_positives, sorted_scores[cut_indices]


def roc_curve(labels: np.ndarray, scores: np.ndarray):
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf, as scikit-learn's
    `roc_curve(..., drop_intermediate=False)`. NaN rates where a class is absent."""
    false_positives, true_positives, thresholds = _cumulative_counts(labels, scores)
    false_positives, true_positives = np.r_[0, false_positives], np.r_[0, true_positives]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = false_positives / false_positives[-1]
        tpr = true_positives / true_positives[-1]
    return fpr, tpr, np.r_[np.inf, thresholds]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids, so ties count half); NaN with only one class."""
    labels = np.asarray(labels)
    if labels.min(initial=1) == labels.max(initial=0):
        return math.nan
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray):
    """(precision, recall, thresholds) ordered as scikit-learn's: recall falling to a final
    (precision 1, recall 0) point that has no threshold."""
    false_positives, true_positives, thresholds = _cumulative_counts(labels, scores)
    precision = true_positives / (true_positives + false_positives)
    # Without positives recall is 1 everywhere, as scikit-learn defines it.
    recall = true_positives / true_positives[-1] if true_positives[-1] else np.ones_like(precision)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """PR AUC as scikit-learn's `average_precision_score`: sum of precision x recall steps
    (no interpolation, which would overstate it). NaN without positives."""
    if not np.any(np.asarray(labels) == 1):
        return math.nan
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


# --- calibration ---------------------------------------------------------------------------------


def sigmoid(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, float)
    return np.exp(-np.logaddexp(0.0, -logits))


def binary_nll(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy computed from logits, stable for large |logit|."""
    labels, logits = np.asarray(labels, float), np.asarray(logits, float)
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10):
    """Per equal-width bin of P(pneumonia): (count, mean probability, observed pneumonia rate).
    Bin edges as scikit-learn's `calibration_curve(strategy="uniform")`."""
    probabilities, labels = np.asarray(probabilities, float), np.asarray(labels, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], probabilities)
    counts = np.bincount(bin_ids, minlength=bins)
    mean_probability = _ratio(np.bincount(bin_ids, probabilities, bins), counts)
    observed_rate = _ratio(np.bincount(bin_ids, labels, bins), counts)
    return counts, mean_probability, observed_rate


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> float:
    """ECE of P(pneumonia) itself (the number we serve): sum over bins of
    (share of images) x |observed pneumonia rate - mean predicted probability|."""
    counts, mean_probability, observed_rate = calibration_bins(labels, probabilities, bins)
    return float(np.sum(counts / max(counts.sum(), 1) * np.abs(observed_rate - mean_probability)))


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict]:
    """`calibration_bins` as the JSON rows reports and reliability plots read."""
    counts, mean_probability, observed_rate = calibration_bins(labels, probabilities, bins)
    return [
        {"count": int(count), "mean_probability": float(mean), "observed_rate": float(rate)}
        for count, mean, rate in zip(counts, mean_probability, observed_rate, strict=True)
    ]


# --- operating point and uncertainty -------------------------------------------------------------


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The cut with the best specificity among those keeping sensitivity >= target, and of
    equally specific cuts the most sensitive one.

    The highest admissible cut is the k-th highest positive score (k = ceil(target x positives)).
    Lowering a cut costs specificity only when it passes a NORMAL score, so it goes down to just
    above the highest NORMAL score below that one: midway to the next higher score, so float
    rounding at serve time cannot flip a case. `scores` are logits in training; with no NORMAL
    below the cut, everything is called PNEUMONIA (a cut one unit below the lowest score)."""
    labels, scores = np.asarray(labels), np.asarray(scores, float)
    positives = np.sort(scores[labels == 1])[::-1]
    if positives.size == 0:
        raise ValueError("Cannot choose a threshold for sensitivity without positive cases.")
    needed = max(1, math.ceil(target * positives.size - 1e-9))
    negatives_below = scores[(labels != 1) & (scores < positives[needed - 1])]
    if negatives_below.size == 0:
        return float(scores.min() - 1.0)
    highest_negative = negatives_below.max()
    return float((highest_negative + scores[scores > highest_negative].min()) / 2.0)


def bootstrap_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    resamples: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> dict[str, dict]:
    """Each metric as {"value", "ci95": [low, high]}: percentile bootstrap over `clusters`
    (patient ids; each image its own cluster when None). Whole patients are resampled, because
    a patient's films share anatomy and errors, so resampling films would count one patient's
    evidence several times and narrow every interval. Resampling is within each class of
    patient (one with any PNEUMONIA film counts as PNEUMONIA, as the split does), so every
    resample has both classes for the AUCs (pROC's default, per image)."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, float)
    weights = cluster_resample_weights(labels, clusters, resamples, seed)
    positive, called = labels == 1, scores >= threshold
    tp, fp = weights @ (positive & called), weights @ (~positive & called)
    fn, tn = weights @ (positive & ~called), weights @ (~positive & ~called)
    samples = rates_from_counts(tp, fp, fn, tn)
    rows = [np.repeat(np.arange(labels.size), row) for row in weights]
    samples["roc_auc"] = np.array([roc_auc(labels[row], scores[row]) for row in rows])
    samples["pr_auc"] = np.array([average_precision(labels[row], scores[row]) for row in rows])
    point = threshold_metrics(labels, scores, threshold)
    point.update(roc_auc=roc_auc(labels, scores), pr_auc=average_precision(labels, scores))
    return {name: _with_interval(point[name], samples[name]) for name in point}


def cluster_resample_weights(
    labels: np.ndarray, clusters: np.ndarray | None, resamples: int, seed: int
) -> np.ndarray:
    """(resamples, N) ints: how often each image enters each resample, drawn by whole cluster,
    as many clusters as there are of each cluster class, with replacement."""
    if clusters is None:
        clusters = np.arange(labels.size)
    names, cluster_of_image = np.unique(np.asarray(clusters), return_inverse=True)
    cluster_label = np.zeros(names.size, dtype=int)
    np.maximum.at(cluster_label, cluster_of_image, labels)
    rng = np.random.default_rng(seed)
    draws = np.zeros((resamples, names.size), dtype=np.int64)
    for value in (0, 1):
        members = np.flatnonzero(cluster_label == value)
        if members.size:
            picked = members[rng.integers(0, members.size, (resamples, members.size))]
            np.add.at(draws, (np.arange(resamples)[:, None], picked), 1)
    return draws[:, cluster_of_image]


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> list[float | None]:
    """Exact binomial interval (Clopper & Pearson 1934) from beta quantiles; it never falls
    outside [0, 1] and keeps its coverage near 0 and 1, where a percentile bootstrap of a
    proportion like 123/124 collapses onto the observed value. Counts images as independent."""
    if trials <= 0:
        return [None, None]
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if successes == 0 else stats.beta.ppf(tail, successes, trials - successes + 1)
    high = (
        1.0 if successes == trials else stats.beta.ppf(1 - tail, successes + 1, trials - successes)
    )
    return [float(low), float(high)]


def exact_rate_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Clopper–Pearson intervals of sensitivity (recall) and specificity at the threshold."""
    (tn, fp), (fn, tp) = confusion_matrix(labels, np.asarray(scores) >= threshold)
    return {
        "recall": {
            "successes": int(tp),
            "trials": int(tp + fn),
            "ci95": clopper_pearson(tp, tp + fn),
        },
        "specificity": {
            "successes": int(tn),
            "trials": int(tn + fp),
            "ci95": clopper_pearson(tn, tn + fp),
        },
    }


def _with_interval(value: float, samples: np.ndarray) -> dict:
    finite = samples[np.isfinite(samples)]
    if not math.isfinite(value) or finite.size == 0:
        return {"value": None, "ci95": [None, None]}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"value": float(value), "ci95": [float(low), float(high)]}
