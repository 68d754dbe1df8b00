"""bias/report.md: the shortcut model against the fixed pipeline, in numbers and pictures."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from worker.audit.bias import TEST_SETS, BiasResult
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
    "## What the fix is, and why it works",
    "",
    "The shortcut exists because, in training, the artefact separates the classes perfectly: "
    "it is on every PNEUMONIA film and on no NORMAL one. A model that reads it is right on every "
    "training and validation film, so nothing in the usual metrics objects.",
    "",
    "1. **Border trimming** (`PreprocessParams.trim_borders`, the default, applied when "
    "serving too) cuts flat padding and flat collimator bands off every film, so those cannot "
    "be learned at all. A textured band or a lead marker is not flat and survives it: that is "
    "the hard case, and the one measured here.",
    "2. **Artefact augmentation** (`worker/audit/artifact_augmentation.py`): before preprocessing, "
    "every training film of both classes, blind to its label and to whether it already carries "
    "an artefact, gets a collimator band and a lead marker painted over their full extent with "
    "random brightness and pattern. Those regions then look the same, in distribution, on "
    "NORMAL and PNEUMONIA films: they carry no label information, and the model can only learn "
    "from the lungs. Painting only a fraction p of the films is not enough when the artefact "
    "marks every PNEUMONIA film: P(artefact | PNEUMONIA) stays 1 while P(artefact | NORMAL) "
    "becomes p, so its *absence* still means NORMAL (the `after_p0.5` column, when present, "
    "measures this).",
    "3. Validation films are not painted: they choose the epoch, the temperature and the "
    "threshold, so they must look like what will be served, and served films are never painted.",
    "",
    "Not chosen: blanking the outer band would also work but must then happen in the shared "
    "preprocessing, at serving too (a `PreprocessParams` change, proposed separately); "
    "cropping to the lung fields needs a lung segmenter at serving time, which real films do "
    "not come with. Limit: the fix covers the artefacts it trims or paints (flat padding; edge "
    "bands, corner markers); an unknown artefact elsewhere is what the audit's border and "
    "artefact energy are for.",
    "",
    "Each model's operating point is chosen on its validation films for 95 % sensitivity "
    "(triage); ROC-AUC compares the models without any threshold.",
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
    for key in AUDIT_ROWS:
        rows[f"{key} ({EXPLAINED_METHOD})"] = {
            name: variant["audit"][EXPLAINED_METHOD][key]
            for name, variant in summary["variants"].items()
        }
    return rows


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def comparison_table(summary: dict) -> Table:
    rows = comparison_rows(summary)
    table = Table(
        title=f"Bias experiment: {summary['config']['artifact']}, correlation 1.0 in train"
    )
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
    audit_plots.comparison_grid(result.panels, out_dir / "figures" / "flipped_examples.png")
    report = out_dir / REPORT_MD
    report.write_text(render(summary, rows))
    return report


def render(summary: dict, rows: dict) -> str:
    config, names = summary["config"], list(summary["variants"])
    lines = [
        f"# Border-bias experiment: `{config['artifact']}`",
        "",
        "> Synthetic phantoms: this shows that the audit catches a shortcut and that the fix "
        "removes it; it says nothing about real radiographs.",
        "",
        f"- Training data: {config['count']} phantom films ({config['film_size']} px), the "
        f"artefact on every PNEUMONIA film and no NORMAL one (train and validation).",
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
        "Reproduce: `pneumo bias-experiment --artifact "
        f"{config['artifact']} --out DIR{' --ablation' if config['ablation_probability'] else ''}`"
        " (`--quick` for the smaller run the tests use).",
        "",
        "Grad-CAM numbers come from the audit of each model on the *independent* test set "
        "(per-model reports: " + ", ".join(f"[{n}]({n}/{REPORT_MD})" for n in names) + ").",
        "",
        *WHY,
        "## Shortcut model vs fixed pipeline",
        "",
        "![before and after](figures/before_after.png)",
        "",
        "## The flipped test set, as each model explains it (Grad-CAM)",
        "",
        "![flipped examples](figures/flipped_examples.png)",
        "",
    ]
    return "\n".join(lines)
