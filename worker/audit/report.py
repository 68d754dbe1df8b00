"""Files of a Grad-CAM audit: audit.json, figures/*.png and report.md (which links them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.table import Table

from worker.audit.explanations import BORDER_FRACTION, AuditResult
from worker.phantoms.artefacts import border_mask

AUDIT_JSON, REPORT_MD, FIGURES = "audit.json", "report.md", "figures"
TABLE_KEYS = (
    "pointing_game",
    "pointing_game_strict",
    "lesion_energy",
    "lung_energy",
    "border_energy",
    "artifact_energy",
    "deletion_auc",
    "randomization_similarity",
)
GRID_ROWS = 5
NOTES = [
    "Energies are shares of each map's positive mass (the map normalised to sum 1), so a map "
    "spread evenly scores its region's area: the outer 10 % band is 36 % of the image.",
    "",
    "The head starts with global average pooling, so each channel's gradient is one number "
    "for the whole map. HiResCAM would equal Grad-CAM exactly and LayerCAM on this layer "
    "would nearly equal Grad-CAM++; Eigen-Grad-CAM (the first principal "
    "component of gradient x activation) is the third method because it differs.",
    "",
]


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "pass" if value else "**FLAG**"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def audit_table(summary: dict, title: str = "Grad-CAM audit") -> Table:
    """The per-method numbers for the terminal: one row per measure, so it fits 80 columns."""
    table = Table(title=title)
    table.add_column("measure")
    methods = summary["methods"]
    for method in methods:
        table.add_column(method, justify="right")
    for key in TABLE_KEYS:
        table.add_row(key.replace("_", " "), *(_cell(scores[key]) for scores in methods.values()))
    verdicts = (_cell(scores["sanity_check_passed"]).strip("*") for scores in methods.values())
    table.add_row("sanity check", *verdicts)
    return table


def markdown_table(summary: dict) -> list[str]:
    header = ["method", *TABLE_KEYS, "sanity check"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, scores in summary["methods"].items():
        cells = [_cell(scores[key]) for key in TABLE_KEYS] + [_cell(scores["sanity_check_passed"])]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def randomisation_table(summary: dict) -> list[str]:
    limit, stages = summary["randomization"]["limit"], summary["randomization"]["stages"]
    methods = list(summary["methods"])
    lines = ["| stage | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    for stage in stages:
        cells = [_similarity_cell(stage["methods"][method], limit) for method in methods]
        lines.append(f"| {stage['stage']} | " + " | ".join(cells) + " |")
    return lines


def _similarity_cell(similarity: dict, limit: float) -> str:
    def one(value) -> str:
        text = _cell(value)
        return f"**{text}**" if value is not None and value > limit else text

    return f"{one(similarity['spearman'])} / {one(similarity['ssim'])}"


def grid_examples(result: AuditResult) -> np.ndarray:
    """True positives first (where the lesion test happens), then other predictions."""
    labels, predicted = result.data.labels, result.explained.predicted
    true_positives = np.flatnonzero((labels == 1) & (predicted == 1))
    others = np.flatnonzero(~((labels == 1) & (predicted == 1)))
    chosen = list(true_positives[: GRID_ROWS - 2]) + list(others[:2])
    chosen += [i for i in true_positives[GRID_ROWS - 2 :] if len(chosen) < GRID_ROWS]
    return np.array(chosen[:GRID_ROWS], dtype=int)


def write_figures(result: AuditResult, figures_dir: Path) -> list[tuple[str, str]]:
    from worker.audit import plots as audit_plots

    data, explained = result.data, result.explained
    chosen = grid_examples(result)
    size = data.images.shape[1]
    masks = {"lung": data.lung_masks, "lesion": data.lesion_masks, "artifact": data.artifact_masks}
    masks = {name: None if stack is None else stack[chosen] for name, stack in masks.items()}
    masks["border"] = np.repeat(border_mask(size, BORDER_FRACTION)[None], len(chosen), axis=0)
    names = ("NORMAL", "PNEUMONIA")
    captions = [
        f"{names[data.labels[i]]} -> {names[explained.predicted[i]]}\n"
        f"P(pneumonia) {explained.probabilities[i]:.2f}"
        for i in chosen
    ]
    maps = {method: stack[chosen] for method, stack in explained.maps.items()}
    figures = [("Examples: input, masks, overlays (x = map peak)", "cam_grid.png")]
    audit_plots.cam_grid(data.images[chosen], masks, maps, captions, figures_dir / figures[0][1])
    if result.deletion_curves:
        figures.append(("Deletion curves", "deletion.png"))
        audit_plots.deletion_plot(
            result.summary["deletion"]["fractions"],
            result.deletion_curves,
            figures_dir / "deletion.png",
        )
    stages = result.summary["randomization"]["stages"]
    figures.append(
        ("Cascading randomisation: similarity to the original maps", "randomisation.png")
    )
    audit_plots.randomisation_plot(stages, figures_dir / "randomisation.png")
    first = result.sanity_indices[0]
    examples = {
        stage: {m: maps[0] for m, maps in by_method.items()}
        for stage, by_method in result.sanity_examples.items()
    }
    figures.append(("One image's maps as the model is randomised", "randomisation_examples.png"))
    audit_plots.randomisation_examples(
        data.images[first], examples, figures_dir / "randomisation_examples.png"
    )
    return figures


def write_audit_report(result: AuditResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / AUDIT_JSON).write_text(json.dumps(result.summary, indent=1) + "\n")
    figures = write_figures(result, out_dir / FIGURES)
    report = out_dir / REPORT_MD
    report.write_text(render_report(result.summary, figures))
    return report


def render_report(summary: dict, figures: list[tuple[str, str]]) -> str:
    model, data = summary["model"], summary["data"]
    lines = [f"# Grad-CAM audit: {model['name']} {model['version']}", ""]
    if model["synthetic"]:
        lines += ["> **Synthetic model**: these numbers describe phantoms, not patients.", ""]
    lines += [
        f"- Data: `{data['path']}` split **{data['split']}**, {data['images']} images, "
        f"{data['pneumonia']} PNEUMONIA, accuracy {data['accuracy']:.3f}, "
        f"{data['true_positives']} true positives; masks: {'yes' if data['masks'] else 'no'}",
        f"- Explained: {summary['target']}, layer `{summary['layer']}`; maps as served",
        f"- Deletion: {summary['deletion']['images']} images; random-order AUC "
        f"{_cell(summary['random_deletion_auc'])} (a faithful map scores well below it)",
        f"- Sanity check: a method {summary['randomization']['rule']}",
        "",
        *markdown_table(summary),
        "",
        "Cascading randomisation, every stage (Spearman / SSIM with the original maps; "
        "**bold**: above the limit):",
        "",
        *randomisation_table(summary),
        "",
        "How each number is computed:",
        "",
        *(f"- *{key}*: {text}" for key, text in summary["definitions"].items()),
        "",
        *NOTES,
    ]
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}]({FIGURES}/{name})", ""]
    return "\n".join(lines)
