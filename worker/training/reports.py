"""What people read: MODEL_CARD.md, the evaluation report (metrics.json, PNGs, report.md) and
the terminal table. Plots are imported only when a report is written, so training and serving
never load matplotlib.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from shared.model_card import ModelCard
from worker.training import fit_choice, ood_report
from worker.training.calibration_report import (
    calibration_line,
    calibration_section,
    write_validation_reliability,
)
from worker.training.histogram_baseline import baseline_markdown

MODEL_CARD_MD = "MODEL_CARD.md"
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision (PPV)",
    "recall": "Sensitivity (recall)",
    "specificity": "Specificity",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC (average precision)",
}
PLOTS = {
    "roc.png": "ROC curve",
    "pr.png": "Precision-recall curve",
    "confusion_matrix.png": "Confusion matrix",
    "reliability.png": "Reliability diagram (before and after calibration)",
    "training_curves.png": "Training curves",
}


def default_limitations(synthetic: bool, source_kind: str) -> list[str]:
    limitations = [
        "Two classes only (NORMAL vs PNEUMONIA): effusion, nodules, tubes, fractures and every "
        "other finding are out of scope and may be called either way.",
        "The threshold is set for high sensitivity, so expect many false positives: use it to "
        "order a worklist, never to rule pneumonia out.",
        "Validated only retrospectively, on a held-out split of its own data source; performance "
        "on other hospitals, scanners, projections (AP, lateral) or populations is unknown.",
        "Grad-CAM maps are coarse (1/8 of the input resolution) and show what the model used, "
        "not the extent of disease.",
    ]
    if source_kind != "medmnist" and not synthetic:
        limitations.append(
            "Kermany et al. (2018) radiographs, and PneumoniaMNIST made from them, are paediatric "
            "(ages 1-5, one centre in Guangzhou): adults were never seen in training."
        )
    if source_kind == "medmnist":
        limitations.append(
            "PneumoniaMNIST images are paediatric (Kermany et al. 2018) and were downscaled "
            "before this pipeline saw them; full-size uploads are a different distribution."
        )
    if synthetic:
        limitations[:0] = [
            "SYNTHETIC DEMO: trained and tested on computer-generated "
            "phantoms; its numbers say nothing about real radiographs.",
            "A real radiograph is unlike every image this model saw: its out-of-distribution "
            "gate is meant to flag it, so the result says out_of_distribution and the page, "
            "pneumo and /predict lead with 'no reliable answer'. The label and probability are "
            "kept for the record only; on a real film they mean nothing, flagged or not.",
        ]
    return limitations


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _metric_cell(entry) -> str:
    """A plain number (validation) or {"value", "ci95"} (evaluation) as text."""
    if isinstance(entry, dict):
        low, high = entry["ci95"]
        return f"{_number(entry['value'])} ({_number(low)}-{_number(high)})"
    return _number(entry)


def _metrics_markdown(named: dict) -> list[str]:
    lines = ["| metric | value (95% CI) |", "|---|---|"]
    lines += [
        f"| {label} | {_metric_cell(named[key])} |"
        for key, label in METRIC_LABELS.items()
        if key in named
    ]
    lines += _exact_markdown(named.get("exact_ci95", {}))
    if "ece_before_calibration" in named:
        lines.append(f"| ECE before calibration | {_number(named['ece_before_calibration'])} |")
    if "ece" in named:
        lines.append(f"| ECE (10 bins) | {_number(named['ece'])} |")
    return lines


def render_model_card(card: ModelCard) -> str:
    lines = [f"# Model card: {card.name} {card.version}", ""]
    if card.synthetic:
        lines += [
            "> **Synthetic model.** Trained on phantoms, not on radiographs of people. "
            "It is a demonstration, not a diagnosis.",
            "",
        ]
    threshold = card.threshold
    lines += [
        "## Intended use",
        "",
        card.intended_use,
        "",
        "## Model",
        "",
        f"- Architecture: `{json.dumps(card.architecture)}` (one logit; "
        "P = sigmoid(slope x logit + intercept))",
        f"- Input: {card.preprocessing.image_size} x {card.preprocessing.image_size} grayscale, "
        f"preprocessing `{card.preprocessing.model_dump_json()}`",
        f"- Grad-CAM layer: `{card.last_conv_layer}`",
        f"- Weights sha256: `{card.sha256}`; created {card.created_at}",
        "",
        "## Operating point",
        "",
        f"- Threshold P(pneumonia) >= {threshold.value:.4f}: {threshold.rule}",
        f"- On validation: sensitivity {_number(threshold.validation_sensitivity)}, "
        f"specificity {_number(threshold.validation_specificity)}",
        "",
    ]
    lines += fit_choice.card_section(card.preprocessing_choice)
    lines += calibration_section(card)
    lines += ood_report.card_section(card)
    lines += _data_section(card.data) + _training_section(card.training)
    for split in ("validation", "test"):
        if split in card.metrics:
            lines += [f"## Metrics: {split}", "", *_metrics_markdown(card.metrics[split]), ""]
    lines += ["## Limitations", "", *[f"- {item}" for item in card.limitations], ""]
    lines += [
        "## Library versions",
        "",
        *[f"- {name} {version}" for name, version in card.library_versions.items()],
        "",
    ]
    return "\n".join(lines)


def _data_section(data: dict) -> list[str]:
    lines = [
        "## Data",
        "",
        f"- Source: `{json.dumps(data.get('source', {}))}`",
        f"- Fingerprint: `{data.get('fingerprint', '')}`",
        f"- Split: {data.get('split_rule', '')}; every file listed in "
        f"`{data.get('split_manifest', '')}`",
        "",
    ]
    counts = data.get("counts") or {}
    if counts:
        lines += ["| split | images | NORMAL | PNEUMONIA | patients |", "|---|---|---|---|---|"]
        lines += [
            f"| {split} | {row.get('images')} | {row.get('NORMAL')} | "
            f"{row.get('PNEUMONIA')} | {row.get('patients', 'n/a')} |"
            for split, row in counts.items()
        ]
        lines.append("")
    return lines


def _training_section(training: dict) -> list[str]:
    keys = (
        "loss",
        "optimizer",
        "augmentation",
        "selection",
        "epochs_run",
        "best_epoch",
        "batch_size",
        "learning_rate",
        "seed",
        "train_images",
        "seconds",
    )
    return [
        "## Training",
        "",
        *[f"- {key}: {training[key]}" for key in keys if key in training],
        "",
    ]


def write_model_card_markdown(card: ModelCard, directory: Path) -> Path:
    """MODEL_CARD.md, and beside it the validation reliability figure it embeds."""
    write_validation_reliability(card, directory)
    path = directory / MODEL_CARD_MD
    path.write_text(render_model_card(card))
    return path


def metrics_table(summary: dict, title: str) -> Table:
    table = Table(title=title)
    for column in ("metric", "value", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, label in METRIC_LABELS.items():
        entry = summary[key]
        low, high = entry["ci95"]
        table.add_row(label, _number(entry["value"]), f"{_number(low)} - {_number(high)}")
    for key, entry in summary.get("exact_ci95", {}).items():
        low, high = entry["ci95"]
        count = f"{entry['successes']}/{entry['trials']}"
        table.add_row(f"{METRIC_LABELS[key]}, exact", count, f"{_number(low)} - {_number(high)}")
    calibration = summary["calibration"]
    table.add_row("ECE before calibration", _number(calibration["before"]["ece"]), "")
    table.add_row("ECE (10 bins)", _number(calibration["ece"]), "")
    table.add_row("Threshold", f"{summary['threshold']:.4f}", "")
    (tn, fp), (fn, tp) = summary["confusion_matrix"]
    table.add_row("Confusion [TN FP; FN TP]", f"[{tn} {fp}; {fn} {tp}]", "")
    ood_report.add_to_table(table, summary)
    return table


def write_report(evaluation, model_dir: Path, out_dir: Path) -> Path:
    """metrics.json, the PNGs and report.md (which embeds them) in out_dir."""
    from worker.training import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    summary, labels, probabilities = (
        evaluation.summary,
        evaluation.labels,
        evaluation.probabilities,
    )
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    threshold = summary["threshold"]
    plots.roc_plot(labels, probabilities, threshold, out_dir / "roc.png")
    plots.pr_plot(labels, probabilities, threshold, out_dir / "pr.png")
    plots.confusion_plot(summary["confusion_matrix"], out_dir / "confusion_matrix.png")
    calibration = summary["calibration"]
    panels = {
        "before calibration": (calibration["before"]["bins"], calibration["before"]["ece"]),
        "after (as served)": (calibration["bins"], calibration["ece"]),
    }
    plots.reliability_plot(panels, out_dir / "reliability.png")
    history_path = model_dir / "history.json"
    if history_path.is_file():
        plots.training_curves_plot(
            json.loads(history_path.read_text()), out_dir / "training_curves.png"
        )
    report = out_dir / "report.md"
    report.write_text(
        render_report(summary, [name for name in PLOTS if (out_dir / name).is_file()])
    )
    return report


def _exact_cell(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['successes']}/{entry['trials']} ({_number(low)}-{_number(high)})"


def _exact_markdown(exact: dict) -> list[str]:
    return [
        f"| {METRIC_LABELS[key]}, exact | {_exact_cell(entry)} |" for key, entry in exact.items()
    ]


def render_report(summary: dict, figures: list[str]) -> str:
    model, data = summary["model"], summary["data"]
    lines = [f"# Evaluation: {model['name']} {model['version']}", ""]
    if model["synthetic"]:
        lines += ["> **Synthetic model**: these numbers describe phantoms, not patients.", ""]
    (tn, fp), (fn, tp) = summary["confusion_matrix"]
    lines += [
        f"- Model sha256 `{model['sha256']}`",
        calibration_line(summary["calibration"]),
        f"- Data: `{data['path']}` split **{data['split']}** ({data['source']}), "
        f"{summary['images']} images, {summary['pneumonia']} PNEUMONIA "
        f"({summary['pneumonia'] / max(summary['images'], 1):.1%}); "
        f"fingerprint `{data['fingerprint'][:16]}`",
        f"- Threshold P(pneumonia) >= {summary['threshold']:.4f} (chosen on validation)",
        f"- 95% CIs: percentile bootstrap, {summary['bootstrap']['resamples']} resamples of "
        f"whole patients ({summary.get('patients', summary['images'])} patients) within "
        "each patient class; exact rows: Clopper-Pearson on image counts",
        *baseline_markdown(summary),
        "",
        *_metrics_markdown(
            {
                **summary,
                "ece": summary["calibration"]["ece"],
                "ece_before_calibration": summary["calibration"]["before"]["ece"],
            }
        ),
        "",
        "| truth \\ predicted | NORMAL | PNEUMONIA |",
        "|---|---|---|",
        f"| NORMAL | {tn} | {fp} |",
        f"| PNEUMONIA | {fn} | {tp} |",
        "",
    ]
    lines += ood_report.report_section(summary)
    for name in figures:
        lines += [f"## {PLOTS[name]}", "", f"![{PLOTS[name]}]({name})", ""]
    return "\n".join(lines)
