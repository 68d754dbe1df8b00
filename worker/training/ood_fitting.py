"""Fitting the out-of-distribution gate after training (`worker.model.ood` serves it).

Statistics come from the training split, every method's threshold from validation (false-flag
rate <= 5 %), and the method served is the one that flags most of the foreign-input benchmark
(`worker.training.ood_benchmark`) at its threshold; every candidate's numbers go in the card.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from shared.imaging import PreprocessParams
from shared.model_card import OodChoice
from worker.model.architecture import split_classifier
from worker.model.ood import (
    METHODS,
    TARGET_FALSE_FLAG_RATE,
    OodStatistics,
    choose_threshold,
    fit_statistics,
)
from worker.training.datasets import Dataset
from worker.training.ood_benchmark import detection_report, foreign_inputs

BENCHMARK_PER_CATEGORY = 24


def pooled_features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 -> (N, C): the trunk's output averaged over space, as the worker's
    compiled call returns it."""
    features, _ = split_classifier(model)
    pooled = layers.GlobalAveragePooling2D(name="ood_pool")(features.output)
    extractor = keras.Model(features.input, pooled)
    return np.asarray(extractor.predict(images[..., None], batch_size=64, verbose=0))


def fit_ood_gate(
    model: keras.Model, dataset: Dataset, params: PreprocessParams, seed: int
) -> tuple[OodStatistics, OodChoice]:
    """Fit on train, threshold on validation, measure every method on the benchmark, choose."""
    train, validation = dataset.splits["train"], dataset.splits["val"]
    foreign = foreign_inputs(validation.images, params, BENCHMARK_PER_CATEGORY, seed)
    # One pass over everything: a Keras predict per category would trace once per shape.
    parts = {"train": train.images, "val": validation.images, **foreign}
    pooled = dict(zip(parts, np.split(
        pooled_features(model, np.concatenate(list(parts.values()))),
        np.cumsum([len(images) for images in parts.values()])[:-1],
    ), strict=True))  # fmt: skip
    statistics = fit_statistics(pooled.pop("train"), train.labels)
    validation_pooled = pooled.pop("val")
    foreign_pooled = pooled
    candidates = {
        method: measure_method(statistics, method, validation_pooled, foreign_pooled)
        for method in METHODS
    }
    chosen = max(METHODS, key=lambda method: _ranking(candidates[method]))
    report = candidates[chosen]
    return statistics, OodChoice(
        method=chosen,
        threshold=report["threshold"],
        rule=(
            f"the validation score with at most {TARGET_FALSE_FLAG_RATE:.0%} of validation "
            "above it; the method is the one flagging the most of the foreign-input benchmark "
            "at its threshold (then the best weakest category)"
        ),
        validation_false_flag_rate=report["in_distribution"]["flag_rate"],
        benchmark_detection_rate=report["foreign"]["flag_rate"],
        benchmark={**report, "measured_on": "validation split + generated foreign inputs"},
        candidates={
            "measured": {method: _summary(candidates[method]) for method in METHODS},
            "chosen_because": _reason(chosen, candidates),
        },
    )


def measure_method(
    statistics: OodStatistics,
    method: str,
    validation_pooled: np.ndarray,
    foreign_pooled: dict[str, np.ndarray],
) -> dict:
    validation_scores = statistics.scores(validation_pooled, method)
    threshold = choose_threshold(validation_scores)
    foreign_scores = {
        name: statistics.scores(pooled, method) for name, pooled in foreign_pooled.items()
    }
    return detection_report(validation_scores, foreign_scores, threshold)


def _ranking(report: dict) -> tuple[float, float]:
    weakest = report["categories"][report["weakest_category"]]["flag_rate"]
    return report["foreign"]["flag_rate"], weakest


def _summary(report: dict) -> dict:
    return {
        "threshold": report["threshold"],
        "validation_false_flag_rate": report["in_distribution"]["flag_rate"],
        "benchmark_detection_rate": report["foreign"]["flag_rate"],
        "category_flag_rates": {
            name: category["flag_rate"] for name, category in report["categories"].items()
        },
    }


def _reason(chosen: str, candidates: dict[str, dict]) -> str:
    rates = ", ".join(
        f"{method} {report['foreign']['flag_rate']:.1%} (weakest: {report['weakest_category']} "
        f"{report['categories'][report['weakest_category']]['flag_rate']:.1%})"
        for method, report in candidates.items()
    )
    return (
        f"{chosen} flagged the most foreign inputs at a <= 5 % validation false-flag rate: {rates}"
    )
