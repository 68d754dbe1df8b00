"""PNG figures for evaluation reports. The only module that imports matplotlib (Agg, no display);
the serving path never imports it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from worker.training import classification_metrics as metrics  # noqa: E402

FIGURE_SIZE = (4.2, 4.0)
DPI = 100


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def roc_plot(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
    fpr, tpr, _ = metrics.roc_curve(labels, probabilities)
    chosen = metrics.threshold_metrics(labels, probabilities, threshold)
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    axes.plot(fpr, tpr, label=f"ROC (AUC {metrics.roc_auc(labels, probabilities):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.scatter(
        [1 - chosen["specificity"]],
        [chosen["recall"]],
        color="red",
        zorder=3,
        label=f"threshold {threshold:.3f}",
    )
    axes.set(
        xlabel="1 - specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01)
    )
    axes.legend(loc="lower right")
    return _save(figure, path)


def pr_plot(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
    precision, recall, _ = metrics.precision_recall_curve(labels, probabilities)
    chosen = metrics.threshold_metrics(labels, probabilities, threshold)
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    average = metrics.average_precision(labels, probabilities)
    axes.step(recall, precision, where="post", label=f"PR (AP {average:.3f})")
    axes.axhline(np.mean(labels), linestyle=":", color="grey", label="prevalence")
    axes.scatter(
        [chosen["recall"]],
        [chosen["precision"]],
        color="red",
        zorder=3,
        label=f"threshold {threshold:.3f}",
    )
    axes.set(
        xlabel="recall (sensitivity)",
        ylabel="precision",
        title="Precision-recall",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower left")
    return _save(figure, path)


def confusion_plot(matrix: list[list[int]], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    values = np.asarray(matrix)
    axes.imshow(values, cmap="Blues")
    for (row, column), count in np.ndenumerate(values):
        colour = "white" if count > values.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    names = ["NORMAL", "PNEUMONIA"]
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="truth",
        title="Confusion matrix",
    )
    return _save(figure, path)


def reliability_plot(panels: dict[str, tuple[list[dict], float]], path: Path) -> Path:
    """One panel per title -> (bins, ECE), side by side on shared axes: "before calibration"
    beside "after" shows what the calibration did."""
    figure, axes_row = plt.subplots(
        1, len(panels), figsize=(FIGURE_SIZE[0] * len(panels), FIGURE_SIZE[1]), squeeze=False
    )
    for axes, (title, (bins, ece)) in zip(axes_row[0], panels.items(), strict=True):
        _reliability_panel(axes, bins, f"{title} (ECE {ece:.3f})")
    return _save(figure, path)


def _reliability_panel(axes, bins: list[dict], title: str) -> None:
    """Observed pneumonia rate per probability bin, each bin's dot sized by its share of images
    (a bin of one image says little, and a connecting line would hide that)."""
    edges = np.linspace(0, 1, len(bins) + 1)
    filled = [entry for entry in bins if entry["count"]]
    total = max(sum(entry["count"] for entry in filled), 1)
    axes.bar(
        edges[:-1],
        [entry["observed_rate"] for entry in bins],
        width=1 / len(bins),
        align="edge",
        edgecolor="black",
        alpha=0.4,
        label="observed rate per bin",
    )
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.scatter(
        [entry["mean_probability"] for entry in filled],
        [entry["observed_rate"] for entry in filled],
        s=[15 + 300 * entry["count"] / total for entry in filled],
        color="red",
        zorder=3,
        label="bin mean (size = images)",
    )
    axes.set(
        xlabel="predicted P(pneumonia)",
        ylabel="observed pneumonia rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="upper left", fontsize="small")


def training_curves_plot(history: dict, path: Path) -> Path:
    epochs = np.arange(1, history["epochs"] + 1)
    figure, (loss_axes, auc_axes) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for key, style in (("loss", "-"), ("val_loss", "--")):
        if key in history:
            loss_axes.plot(epochs, history[key], style, label=key)
    for key, style in (("auc", "-"), ("val_auc", "--")):
        if key in history:
            auc_axes.plot(epochs, history[key], style, label=key)
    if history.get("best_epoch"):
        for axes in (loss_axes, auc_axes):
            axes.axvline(history["best_epoch"], color="grey", linestyle=":", label="kept")
    loss_axes.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss")
    auc_axes.set(xlabel="epoch", ylabel="ROC-AUC", title="ROC-AUC")
    loss_axes.legend()
    auc_axes.legend()
    return _save(figure, path)
