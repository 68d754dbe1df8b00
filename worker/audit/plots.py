"""Figures for the Grad-CAM audit and the bias experiment: matplotlib Agg, PNG files, no display.

Overlays are drawn with `shared.overlay.blend`, the same pixels a user gets back from a job.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from shared.overlay import blend  # noqa: E402

DPI = 72  # the model inputs are 64-128 px: more dots would only add bytes to the repository
PANEL = 1.7  # inches per image panel
MASK_COLOURS = {"lung": "cyan", "lesion": "red", "artifact": "yellow", "border": "white"}


def _save(figure: Figure, path: Path) -> Path:
    """PNG with a 256-colour palette: a third of the bytes, for figures kept in the repository."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    plt.close(figure)
    rendered = Image.open(buffer).convert("RGB")
    rendered.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def _outline(axes, mask: np.ndarray | None, colour: str, style: str = "-") -> None:
    if mask is not None and mask.any() and not mask.all():
        axes.contour(
            mask.astype(float), levels=[0.5], colors=colour, linewidths=0.9, linestyles=style
        )


def _blank(axes, title: str) -> None:
    axes.set_title(title, fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])


def cam_grid(
    images: np.ndarray,
    masks: dict[str, np.ndarray | None],
    maps: dict[str, np.ndarray],
    captions: list[str],
    path: Path,
) -> Path:
    """One row per image: the model input, its masks outlined, then one overlay per method with
    the lesion outline and the map's peak (x)."""
    methods = list(maps)
    lesions = masks.get("lesion")
    rows, columns = len(images), 2 + len(methods)
    figure, grid = plt.subplots(
        rows, columns, figsize=(PANEL * columns, PANEL * rows), squeeze=False
    )
    for row, image in enumerate(images):
        grid[row, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
        _blank(grid[row, 0], captions[row])
        grid[row, 1].imshow(image, cmap="gray", vmin=0, vmax=255)
        for name, stack in masks.items():
            _outline(grid[row, 1], None if stack is None else stack[row], MASK_COLOURS[name])
        _blank(grid[row, 1], "masks:\n" + ", ".join(n for n, s in masks.items() if s is not None))
        for column, method in enumerate(methods, start=2):
            cam = maps[method][row]
            grid[row, column].imshow(blend(image, cam))
            _outline(grid[row, column], None if lesions is None else lesions[row], "white")
            peak_row, peak_column = np.unravel_index(int(np.argmax(cam)), cam.shape)
            grid[row, column].plot(peak_column, peak_row, "wx", markersize=7, markeredgewidth=2)
            _blank(grid[row, column], method)
    return _save(figure, path)


def deletion_plot(fractions: list[float], curves: dict[str, list[float]], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(4.6, 3.6))
    for name, curve in curves.items():
        style: dict[str, Any] = (
            {"linestyle": ":", "color": "grey"} if name == "random" else {"marker": "o"}
        )
        axes.plot(fractions, curve, label=name, markersize=3, **style)
    axes.set(
        xlabel="fraction of pixels removed (most relevant first)",
        ylabel="mean P(pneumonia)",
        title="Deletion (ROAD-style imputation)",
        ylim=(0, 1.02),
    )
    axes.legend()
    return _save(figure, path)


def randomisation_plot(stages: list[dict], path: Path) -> Path:
    """Similarity to the original maps after each cumulative randomisation stage."""
    names = [stage["stage"] for stage in stages]
    methods = list(stages[0]["methods"]) if stages else []
    figure, (rank_axes, ssim_axes) = plt.subplots(1, 2, figsize=(8.4, 3.4), sharey=True)
    for method in methods:
        for axes, key in ((rank_axes, "spearman"), (ssim_axes, "ssim")):
            values = [stage["methods"][method][key] for stage in stages]
            axes.plot(names, [np.nan if v is None else v for v in values], marker="o", label=method)
    for axes, title in ((rank_axes, "Spearman rank correlation"), (ssim_axes, "SSIM")):
        axes.axhline(0.5, color="red", linestyle=":", label="flag above")
        axes.set(title=title, ylim=(-1.05, 1.05), xlabel="randomised (cumulative, from the top)")
        axes.tick_params(axis="x", labelrotation=20, labelsize=7)
    rank_axes.legend(fontsize=7)
    return _save(figure, path)


def randomisation_examples(
    image: np.ndarray, examples: dict[str, dict[str, np.ndarray]], path: Path
) -> Path:
    """One image's map (rows: methods) after each randomisation stage (columns); `examples`
    is stage -> method -> map."""
    stages = list(examples)
    methods = list(examples[stages[0]])
    figure, grid = plt.subplots(
        len(methods),
        len(stages),
        squeeze=False,
        figsize=(PANEL * len(stages), PANEL * len(methods)),
    )
    for row, method in enumerate(methods):
        for column, stage in enumerate(stages):
            grid[row, column].imshow(blend(image, examples[stage][method]))
            _blank(grid[row, column], f"{method}: {stage}")
    return _save(figure, path)


def before_after_plot(rows: dict[str, dict[str, float | None]], path: Path) -> Path:
    """Grouped bars: one group per quantity, one bar per model (before / after the fix)."""
    models = list(rows)
    quantities = list(rows[models[0]])
    figure, axes = plt.subplots(figsize=(1.3 * len(quantities) + 2, 3.6))
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        heights = [rows[model][quantity] or 0.0 for quantity in quantities]  # None: not measured
        axes.bar(np.arange(len(quantities)) + index * width, heights, width, label=model)
    axes.set_xticks(np.arange(len(quantities)) + width * (len(models) - 1) / 2)
    axes.set_xticklabels(quantities, rotation=20, fontsize=8)
    axes.set(ylim=(0, 1.05), title="Shortcut model vs fixed pipeline")
    axes.legend()
    return _save(figure, path)


def comparison_grid(
    columns: dict[str, list[tuple[np.ndarray, np.ndarray, str]]], path: Path
) -> Path:
    """Side by side per model (columns): the same films' overlays, one film per row."""
    names = list(columns)
    rows = len(columns[names[0]])
    figure, grid = plt.subplots(
        rows, len(names), squeeze=False, figsize=(2.2 * len(names), PANEL * rows)
    )
    for column, name in enumerate(names):
        for row, (image, cam, caption) in enumerate(columns[name]):
            grid[row, column].imshow(blend(image, cam))
            _blank(grid[row, column], f"{name}\n{caption}")
    return _save(figure, path)


def grid_plot(summary: dict, path: Path, metric: str = "roc_auc") -> Path:
    """One panel per artefact: `metric` on the flipped and clean test sets against the train
    correlation, mean over seeds with +-1 sd bars, before and after the remedy."""
    artifacts = list(summary)
    figure, panels = plt.subplots(
        1, len(artifacts), figsize=(4.4 * len(artifacts), 3.6), squeeze=False, sharey=True
    )
    for axes, artifact in zip(panels[0], artifacts, strict=True):
        correlations = sorted(summary[artifact], key=float)
        positions = [float(c) for c in correlations]
        for variant, colour in (("before", "tab:red"), ("after", "tab:blue")):
            for test_set, style in (("flipped", "-o"), ("clean", ":s")):
                cells = [summary[artifact][c][variant][test_set][metric] for c in correlations]
                axes.errorbar(
                    positions, [cell["mean"] for cell in cells], [cell["sd"] for cell in cells],
                    fmt=style, color=colour, capsize=3, markersize=4,
                    label=f"{variant}, {test_set} test",
                )  # fmt: skip
        axes.axhline(0.5, color="grey", linewidth=0.8)
        axes.set(title=artifact, xlabel="train correlation of artefact and label",
                 ylim=(0, 1.02), xticks=positions)  # fmt: skip
    panels[0][0].set_ylabel(f"test {metric} (mean +- sd over seeds)")
    panels[0][0].legend(fontsize=7, loc="lower left")
    return _save(figure, path)
