"""Squash or letterbox: the measured choice of how training makes a non-square film square.

`python -m worker.audit.fit_comparison` trains the same small model both ways on phantoms of
aspect ratio 0.6-1.6 and scores held-out films (AUC, and the pointing game on true positives).
Its printed numbers, one run per seed, are recorded here and copied into every card this
pipeline writes, so a reader sees why the model was trained with the fit it was. The choice is
computed from them (`RULE`): add a seed and it follows. On four seeds neither fit wins every
seed; the spread between seeds (AUC 0.93-0.98 either way) is larger than the difference between
the fits, so squash keeps a small lead in mean AUC and letterbox in mean pointing game.
`PreprocessParams` keeps squash as its own default: cards written before this choice carry no
`fit` and were trained squashed, so they must keep being served squashed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from shared.model_card import PreprocessingChoice

Fit = Literal["squash", "letterbox"]

MEASURED_BY = "python -m worker.audit.fit_comparison --train 600 --epochs 8 --seed N"
# As printed by the command above, one run per seed (128 px input; 192 px phantoms cropped to
# 0.6-1.6 rows/columns; 200 held-out films, 100 with a lesion). Seed 0 was run twice: same numbers.
MEASUREMENTS: dict[str, dict[str, dict[str, float]]] = {
    "seed 0": {
        "squash": {"auc": 0.9482, "pointing_game": 0.8113, "true_positives_pointed": 53},
        "letterbox": {"auc": 0.9827, "pointing_game": 0.9588, "true_positives_pointed": 97},
    },
    "seed 1": {
        "squash": {"auc": 0.9732, "pointing_game": 1.0, "true_positives_pointed": 100},
        "letterbox": {"auc": 0.9293, "pointing_game": 0.97, "true_positives_pointed": 100},
    },
    "seed 2": {
        "squash": {"auc": 0.9585, "pointing_game": 0.8866, "true_positives_pointed": 97},
        "letterbox": {"auc": 0.9506, "pointing_game": 1.0, "true_positives_pointed": 11},
    },
    "seed 3": {
        "squash": {"auc": 0.9729, "pointing_game": 0.9293, "true_positives_pointed": 99},
        "letterbox": {"auc": 0.96, "pointing_game": 0.8824, "true_positives_pointed": 34},
    },
}
SCORED = ("auc", "pointing_game")
RULE = "the higher mean held-out AUC over the measured seeds, then the higher mean pointing game"


def mean_scores(measurements: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict]:
    """Per fit, each metric averaged over the seeds."""
    fits = next(iter(measurements.values()))
    return {
        fit: {
            metric: round(float(np.mean([seed[fit][metric] for seed in measurements.values()])), 4)
            for metric in SCORED
        }
        for fit in fits
    }


def measured_best(measurements: dict[str, dict[str, dict[str, float]]]) -> Fit:
    means = mean_scores(measurements)
    fits: tuple[Fit, ...] = ("squash", "letterbox")
    return max(fits, key=lambda fit: (means[fit]["auc"], means[fit]["pointing_game"]))


CHOSEN_FIT: Fit = measured_best(MEASUREMENTS)


def preprocessing_choice(fit: Fit) -> PreprocessingChoice:
    """The record for a model trained with `fit`: the measured choice, or an override."""
    if fit == CHOSEN_FIT:
        rule = RULE
    else:
        rule = f"{fit}, chosen by whoever trained it over the measured {CHOSEN_FIT} ({RULE})"
    return PreprocessingChoice(fit=fit, rule=rule, measured_by=MEASURED_BY, results=MEASUREMENTS)


def card_section(choice: PreprocessingChoice | None) -> list[str]:
    """MODEL_CARD.md's account of the fit; nothing for cards made before the choice existed."""
    if choice is None:
        return []
    lines = [
        "## Preprocessing: non-square films",
        "",
        f"- Fit: **{choice.fit}**",
        f"- Chosen by: {choice.rule}",
        f"- Measured by `{choice.measured_by}` (same seeds for both fits; held-out phantoms)",
        *[
            f"- Mean over {len(choice.results)} seeds, {fit}: AUC {means['auc']:.3f}, "
            f"pointing game {means['pointing_game']:.3f}"
            for fit, means in mean_scores(choice.results).items()
        ],
        "",
        "| seed | fit | AUC | pointing game | true positives pointed at |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {seed} | {fit} | {numbers['auc']:.3f} | {numbers['pointing_game']:.3f} | "
        f"{_count(numbers.get('true_positives_pointed'))} |"
        for seed, fits in choice.results.items()
        for fit, numbers in fits.items()
    ]
    return [*lines, ""]


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"
