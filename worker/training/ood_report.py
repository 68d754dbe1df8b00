"""The out-of-distribution gate in words: the model card's section and the evaluation report's."""

from __future__ import annotations

from rich.table import Table

from shared.model_card import ModelCard
from shared.schemas import OUT_OF_DISTRIBUTION_MESSAGE

CATEGORY_NAMES = {
    "natural_images": "photographs and other natural images",
    "text_documents": "rendered text and documents",
    "noise": "noise fields",
    "gradients": "gradients",
    "inverted_films": "films with inverted polarity",
    "rotated_films": "films rotated 90 degrees",
    "cropped_views": "cropped (cone-down) views",
    "lateral_views": "lateral-like views",
    "unseen_style_phantoms": "phantoms in a film style never trained on",
}
REAL_FILMS = (
    "This model has seen phantoms only, so its label for a real chest radiograph means "
    "nothing. The gate is there to say so: a film unlike the phantoms scores above the "
    "threshold, the result says `assessment: out_of_distribution`, and the page, `pneumo "
    f'submit` and `/predict` lead with "{OUT_OF_DISTRIBUTION_MESSAGE}" before the label, '
    "which is kept for the record only. The table above is measured on generated inputs; "
    "no real patient film was available to measure, so a real film that happens to score "
    "below the threshold would still get a label that must not be trusted."
)


def benchmark_lines(report: dict) -> list[str]:
    """A markdown table of flag rates: false flags on the split, detections per category."""
    lines = ["| input | images | flagged |", "|---|---|---|"]
    in_distribution = report["in_distribution"]
    lines.append(
        f"| in distribution (false flags) | {in_distribution['images']} | "
        f"{in_distribution['flag_rate']:.1%} |"
    )
    for name, category in report["categories"].items():
        label = CATEGORY_NAMES.get(name, name)
        lines.append(f"| {label} | {category['images']} | {category['flag_rate']:.1%} |")
    foreign = report["foreign"]
    lines.append(f"| **all foreign inputs** | {foreign['images']} | {foreign['flag_rate']:.1%} |")
    return lines


def card_section(card: ModelCard) -> list[str]:
    lines = ["## Out-of-distribution gate", ""]
    gate = card.ood
    if gate is None:
        return lines + ["None: this artifact predates the gate; results say `not_assessed`.", ""]
    lines += [
        f"- Method: **{gate.method}** on the pooled `features` output, statistics in "
        f"`{gate.file}` (sha256 `{gate.sha256[:16]}`); scores above {gate.threshold:.3f} "
        "are flagged",
        f"- Threshold: {gate.rule}",
        f"- Validation false-flag rate: {gate.validation_false_flag_rate:.1%}",
    ]
    if gate.benchmark_detection_rate is not None:
        lines.append(
            f"- Benchmark detection rate: {gate.benchmark_detection_rate:.1%} of foreign inputs "
            f"({gate.benchmark.get('measured_on', '')})"
        )
    if gate.candidates.get("chosen_because"):
        lines.append(f"- Chosen because: {gate.candidates['chosen_because']}")
    lines.append("")
    if gate.benchmark:
        lines += [*benchmark_lines(gate.benchmark), ""]
    if card.synthetic:
        lines += [f"**Real films.** {REAL_FILMS}", ""]
    return lines


def report_section(summary: dict) -> list[str]:
    report = summary.get("ood") or {}
    if not report.get("method"):
        return ["## Out-of-distribution benchmark", "", "Not run: the model has no gate.", ""]
    return [
        "## Out-of-distribution benchmark",
        "",
        f"Method **{report['method']}**, threshold {report['threshold']:.3f}; in distribution "
        f"= this {summary['data']['split']} split, foreign inputs generated from it and from "
        "the benchmark's generators.",
        "",
        *benchmark_lines(report),
        "",
    ]


def add_to_table(table: Table, summary: dict) -> None:
    report = summary.get("ood") or {}
    if report.get("method"):
        table.add_row(
            "OOD false flags (this split)", f"{report['in_distribution']['flag_rate']:.1%}", ""
        )
        table.add_row("OOD detection (foreign inputs)", f"{report['foreign']['flag_rate']:.1%}", "")
