"""The floor a benchmark must clear: logistic regression on each film's intensity histogram.

A film's grey-level histogram knows how much dense tissue it shows but not where. If it ranks
PNEUMONIA above NORMAL nearly as well as the CNN, the benchmark rewards brightness, not reading;
`pneumo evaluate` reports it beside the model for that reason. Small numpy + scipy (L-BFGS on
the L2-penalised log-loss), so the training extra needs nothing more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.training import classification_metrics as metrics

BINS = 32
L2_PENALTY = 1.0  # on standardised features: enough to keep 32 correlated bins from overfitting


def intensity_histograms(images: np.ndarray) -> np.ndarray:
    """(N, BINS) fraction of each image's pixels per grey-level bin (uint8 model inputs)."""
    flat = images.reshape(len(images), -1).astype(np.int64) * BINS // 256
    counts = np.stack([np.bincount(row, minlength=BINS) for row in flat])
    return counts / flat.shape[1]


def _loss_and_gradient(parameters: np.ndarray, features: np.ndarray, labels: np.ndarray):
    weights, bias = parameters[:-1], parameters[-1]
    logits = features @ weights + bias
    # log(1 + e^z) - y z, computed without overflow
    loss = np.logaddexp(0.0, logits) - labels * logits
    error = 1.0 / (1.0 + np.exp(-logits)) - labels
    count = len(labels)
    value = loss.sum() / count + 0.5 * L2_PENALTY * weights @ weights / count
    gradient = np.append(features.T @ error / count + L2_PENALTY * weights / count, error.mean())
    return value, gradient


class HistogramBaseline:
    """Standardise the histograms, fit the logistic regression, score new films."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from scipy.optimize import minimize  # the report module imports this one without fitting

        features = intensity_histograms(images)
        self.mean, self.scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        standardised = (features - self.mean) / self.scale
        start = np.zeros(BINS + 1)
        fit = minimize(
            _loss_and_gradient,
            start,
            args=(standardised, labels.astype(np.float64)),
            jac=True,
            method="L-BFGS-B",
        )
        self.parameters = fit.x

    def scores(self, images: np.ndarray) -> np.ndarray:
        standardised = (intensity_histograms(images) - self.mean) / self.scale
        return standardised @ self.parameters[:-1] + self.parameters[-1]


def baseline_summary(train_images, train_labels, test_images, test_labels) -> dict:
    """ROC-AUC of the histogram baseline fitted on one split and scored on another."""
    baseline = HistogramBaseline(train_images, train_labels)
    return {
        "method": f"logistic regression on {BINS}-bin intensity histograms (L2 {L2_PENALTY})",
        "train_images": int(len(train_labels)),
        "images": int(len(test_labels)),
        "roc_auc": metrics.roc_auc(test_labels, baseline.scores(test_images)),
    }


def histogram_baseline_for(
    model_dir: Path, data_path: Path, split: str, cache_dir=None
) -> dict | None:
    """The baseline beside a model's evaluation: fitted on the model's own training split (same
    seed and validation carve-out, same preprocessing) and scored on `split`; None when the
    data has no training films of both classes to fit it on."""
    from worker.model.artifact import read_card
    from worker.training.datasets import load_dataset
    from worker.training.evaluation import training_split_settings

    params = read_card(model_dir).preprocessing
    dataset = load_dataset(
        data_path,
        params,
        splits=("train", split),
        cache_dir=cache_dir,
        **training_split_settings(model_dir),
    )
    train, scored = dataset.splits["train"], dataset.splits[split]
    if len(set(train.labels.tolist())) < 2 or len(set(scored.labels.tolist())) < 2:
        return None
    return baseline_summary(train.images, train.labels, scored.images, scored.labels)


def baseline_markdown(summary: dict) -> list[str]:
    """The report's lines for the baseline, if the evaluation carries one."""
    baseline = summary.get("histogram_baseline")
    if baseline is None:
        return []
    return [
        f"- Histogram baseline ({baseline['method']}, fitted on {baseline['train_images']} "
        f"training images): ROC-AUC **{baseline['roc_auc']:.3f}** on the same images "
        f"(model: {summary['roc_auc']['value']:.3f}); near the model's, the benchmark would "
        "reward brightness rather than reading.",
    ]
