"""bias/report.md: one run of the bias experiment (the shortcut model against the remedy, with
the Grad-CAM audit), and bias/grid.md: the grid over correlations, seeds and artefacts."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from worker.audit.bias import TEST_SETS, VARIANTS, BiasResult
from worker.audit.report import REPORT_MD

EXPLAINED_METHOD = "gradcam"
AUDIT_ROWS = (
    "border_energy",
    "artifact_energy",
    "lesion_energy",
    "lung_energy",
    "pointing_game",
    "pointing_game_strict",
    "deletion_auc",
    "randomization_similarity",
)
TEST_LABELS = {
    "accuracy": "accuracy",
    "recall": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "ROC-AUC",
}


WHY = [
    "## The remedy, and why it might not work",
    "",
    "The shortcut exists because, in training, the artefact's presence differs between the "
    "classes. A model that reads it is right on most training and validation films, so nothing "
    "in the usual metrics objects.",
    "",
    "The remedy (`worker/audit/artifact_augmentation.py`) knows nothing about the generator: "
    "it does not import where the band or the marker are drawn. It assumes only that a chest "
    "film's diagnosis is not in its outer frame, and overwrites each side of every training "
    "film (both classes, blind to the label) with a strip 10-20 % of the side wide, filled "
    "with noise at a random grey level. An artefact inside that frame then carries no label "
    "information in training. One further in (the text label over the apices, 15-24 % from "
    "the top) is covered only in part: that is the artefact it was not designed for, and the "
    "grid measures both. Validation and serving films are never erased.",
    "",
    "Before and after share the data, the architecture, the epochs, the early stopping, the "
    "seed and the preprocessing; the only difference is the erasing. Each model's operating "
    "point is chosen on its validation films for 95 % sensitivity (triage); ROC-AUC compares "
    "the models without any threshold.",
    "",
]


def comparison_rows(summary: dict) -> dict[str, dict[str, float | None]]:
    """quantity -> variant -> value: test scores per test set, then the Grad-CAM audit."""
    rows: dict[str, dict[str, float | None]] = {}
    for test_set in TEST_SETS:
        for key, label in TEST_LABELS.items():
            rows[f"{label} ({test_set})"] = {
                name: variant["test"][test_set][key]
                for name, variant in summary["variants"].items()
            }
    audited = all("audit" in variant for variant in summary["variants"].values())
    for key in AUDIT_ROWS if audited else ():
        rows[f"{key} ({EXPLAINED_METHOD})"] = {
            name: variant["audit"][EXPLAINED_METHOD][key]
            for name, variant in summary["variants"].items()
        }
    return rows


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def comparison_table(summary: dict) -> Table:
    rows = comparison_rows(summary)
    config = summary["config"]
    title = f"Bias experiment: {config['artifact']}, train correlation {config['correlation']:g}"
    table = Table(title=title)
    table.add_column("quantity")
    for name in summary["variants"]:
        table.add_column(name, justify="right")
    for quantity, values in rows.items():
        table.add_row(quantity, *(_cell(value) for value in values.values()))
    return table


def write_bias_report(result: BiasResult, out_dir: Path) -> Path:
    from worker.audit import plots as audit_plots

    summary = result.summary
    rows = comparison_rows(summary)
    chart = {
        name: {
            q: rows[q][name]
            for q in rows
            if q.startswith(("accuracy", "border", "lesion", "lung", "artifact"))
        }
        for name in summary["variants"]
    }
    audit_plots.before_after_plot(chart, out_dir / "figures" / "before_after.png")
    if result.panels:
        audit_plots.comparison_grid(result.panels, out_dir / "figures" / "flipped_examples.png")
    report = out_dir / REPORT_MD
    report.write_text(render(summary, rows))
    return report


def render(summary: dict, rows: dict) -> str:
    config, names = summary["config"], list(summary["variants"])
    lines = [
        f"# Bias experiment: `{config['artifact']}` at train correlation {config['correlation']:g}",
        "",
        "> Synthetic phantoms, one seed: this shows whether the audit catches a shortcut and "
        "whether a generic remedy removes it here; [grid.md](grid.md) has the spread over "
        "seeds. It says nothing about real radiographs.",
        "",
        f"- Training data: {config['count']} phantom films ({config['film_size']} px); on a "
        f"share {config['correlation']:g} of train and validation films the artefact is drawn "
        "exactly when the film is PNEUMONIA, on the rest on a random half.",
        f"- Test sets, {config['test_count']} films each, the same patients in all three: "
        "*clean* (no artefact), *independent* (artefact on a random half), *flipped* (artefact "
        "on NORMAL films only).",
        f"- Model: {config['image_size']} px, conv blocks {config['block_filters']}, up to "
        f"{config['epochs']} epochs, best validation ROC-AUC kept; seed {config['seed']}.",
        *(f"- **{name}**: {summary['variants'][name]['description']}" for name in names),
        "",
        "| quantity | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(
            f"| {q} | " + " | ".join(_cell(v) for v in values.values()) + " |"
            for q, values in rows.items()
        ),
        "",
        f"Reproduce: `pneumo bias-experiment --artifact {config['artifact']} --correlation "
        f"{config['correlation']:g} --seed {config['seed']} --out DIR`; over correlations, seeds "
        "and artefacts: `pneumo bias-grid` ([grid.md](grid.md)).",
        "",
        "Grad-CAM numbers come from the audit of each model on the *independent* test set "
        "(per-model reports: " + ", ".join(f"[{n}]({n}/{REPORT_MD})" for n in names) + ").",
        "",
        *WHY,
        "## Shortcut model vs remedy",
        "",
        "![before and after](figures/before_after.png)",
        "",
        "## The flipped test set, as each model explains it (Grad-CAM)",
        "",
        "![flipped examples](figures/flipped_examples.png)",
        "",
    ]
    return "\n".join(lines)


def write_grid_report(grid: dict, out_dir: Path) -> Path:
    """grid.md and figures/grid_auc.png, figures/grid_accuracy.png from grid.json's content."""
    from worker.audit import plots as audit_plots

    figures = out_dir / "figures"
    audit_plots.grid_plot(grid["summary"], figures / "grid_auc.png", "roc_auc")
    audit_plots.grid_plot(grid["summary"], figures / "grid_accuracy.png", "accuracy")
    report = out_dir / "grid.md"
    report.write_text(render_grid(grid))
    return report


def _cells(config: dict) -> int:
    return len(config["artifacts"]) * len(config["correlations"]) * len(config["seeds"])


def _mean_sd(entry: dict) -> str:
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def render_grid(grid: dict) -> str:
    config, summary = grid["config"], grid["summary"]
    cell = config["cell"]
    lines = [
        "# Bias experiment over a grid: correlations x seeds x artefacts",
        "",
        "> Synthetic phantoms: this measures whether a generic remedy removes a shortcut in "
        "phantoms; it says nothing about real radiographs.",
        "",
        f"- Seeds {', '.join(map(str, config['seeds']))} per cell (mean ± sample sd over "
        f"seeds); {cell['count']} train+val films of {cell['film_size']} px, "
        f"{cell['image_size']} px model input, {cell['epochs']} epochs at most for both "
        f"variants (patience {cell['patience']}); {cell['test_count']} films per test set.",
        f"- Whole grid: {grid['seconds']} s."
        if grid.get("complete", True)
        else f"- **Partial grid**: {len(grid['runs'])} of {_cells(config)} cells ran, in "
        f"{grid['seconds']} s; the rest were not measured.",
        f"- **before**: {VARIANTS['before']}; **after**: {VARIANTS['after']}.",
        "- Correlation c: a share c of train/val films carry the artefact exactly when "
        "PNEUMONIA, the rest on a random half. *flipped*: the artefact on NORMAL test films only.",
        "",
        "![ROC-AUC over the grid](figures/grid_auc.png)",
        "",
        "![accuracy over the grid](figures/grid_accuracy.png)",
        "",
        "| artefact | train c | flipped AUC before | flipped AUC after | clean AUC before | "
        "clean AUC after | flipped accuracy before | flipped accuracy after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for artifact, by_correlation in summary.items():
        for correlation in sorted(by_correlation, key=float):
            variants = by_correlation[correlation]
            cells = [
                variants[variant][test_set][metric]
                for metric, test_set in (
                    ("roc_auc", "flipped"),
                    ("roc_auc", "clean"),
                    ("accuracy", "flipped"),
                )  # fmt: skip
                for variant in ("before", "after")
            ]
            lines.append(
                f"| {artifact} | {correlation} | " + " | ".join(map(_mean_sd, cells)) + " |"
            )
    lines += ["", *WHY, "Reproduce: `pneumo bias-grid --out DIR` (grid.json holds every run).", ""]
    return "\n".join(lines)
