"""The calibration parts of the reports: the model card's section and figure (validation,
before and after Platt scaling) and the evaluation report's one-line summary."""

from __future__ import annotations

from pathlib import Path

from shared.model_card import ModelCard

CALIBRATION_PNG = "calibration.png"  # validation reliability before and after, beside the card
GUARD_WORDS = {
    "none": "none needed (validation classes overlap)",
    "regularised": "regularised",
    "fallback": "fallback to the identity",
}


def number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _formula(slope: float, intercept: float) -> str:
    sign = "+" if intercept >= 0 else "-"
    return f"sigmoid({slope:.4f} x logit {sign} {abs(intercept):.4f})"


def calibration_section(card: ModelCard) -> list[str]:
    calibration, measured = card.calibration, card.metrics.get("calibration", {})
    guard = GUARD_WORDS[calibration.guard]
    lines = [
        "## Calibration",
        "",
        f"- Method: {calibration.method}",
        f"- P(pneumonia) = {_formula(calibration.slope, calibration.intercept)}",
        f"- Guard: {guard}" + (f": {calibration.reason}" if calibration.reason else ""),
    ]
    if "validation_ece" in measured:
        ece, nll = measured["validation_ece"], measured["validation_nll"]
        lines += [
            "",
            "| on validation | before | after |",
            "|---|---|---|",
            f"| ECE (10 bins) | {number(ece['before'])} | {number(ece['after'])} |",
            f"| NLL | {number(nll['before'])} | {number(nll['after'])} |",
        ]
    if "reliability" in measured:
        lines += ["", f"![Reliability on validation, before and after]({CALIBRATION_PNG})"]
    return [*lines, ""]


def write_validation_reliability(card: ModelCard, directory: Path) -> Path | None:
    """calibration.png beside MODEL_CARD.md, when the card holds the validation bins."""
    measured = card.metrics.get("calibration", {})
    if "reliability" not in measured:
        return None
    from worker.training import plots

    panels = {
        f"validation, {stage} calibration": (
            measured["reliability"][stage],
            measured["validation_ece"][stage],
        )
        for stage in ("before", "after")
    }
    return plots.reliability_plot(panels, directory / CALIBRATION_PNG)


def calibration_line(calibration: dict) -> str:
    guard = f" (guard: {calibration['guard']})" if calibration["guard"] != "none" else ""
    return (
        f"- Calibration: P = {_formula(calibration['slope'], calibration['intercept'])}, "
        f"{calibration['method']}{guard}; ECE {calibration['before']['ece']:.3f} before, "
        f"{calibration['ece']:.3f} after"
    )
