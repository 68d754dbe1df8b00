"""The OOD scores on feature vectors with known answers: no model, no TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.model.ood import (
    METHODS,
    TARGET_FALSE_FLAG_RATE,
    OodGate,
    choose_threshold,
    fit_statistics,
    flag_rate,
    load_statistics,
    save_statistics,
)

CHANNELS = 16


def two_classes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters in positive feature space, as pooled ReLU features are."""
    labels = np.arange(count) % 2
    centres = np.stack([np.full(CHANNELS, 2.0), np.full(CHANNELS, 3.0)])
    return centres[labels] + rng.normal(0.0, 0.3, (count, CHANNELS)), labels


@pytest.mark.parametrize("method", METHODS)
def test_threshold_keeps_validation_false_flags_at_most_the_target(method: str) -> None:
    rng = np.random.default_rng(0)
    statistics = fit_statistics(*two_classes(rng, 400))
    validation, _ = two_classes(rng, 200)
    scores = statistics.scores(validation, method)
    threshold = choose_threshold(scores)
    assert flag_rate(scores, threshold) <= TARGET_FALSE_FLAG_RATE
    held_out, _ = two_classes(rng, 400)  # fresh in-distribution data stays near the target
    assert flag_rate(statistics.scores(held_out, method), threshold) <= 2 * TARGET_FALSE_FLAG_RATE


def test_mahalanobis_flags_points_off_both_clusters_but_not_between_classes() -> None:
    rng = np.random.default_rng(1)
    statistics = fit_statistics(*two_classes(rng, 400))
    validation, _ = two_classes(rng, 200)
    gate = OodGate(
        statistics, "mahalanobis", choose_threshold(statistics.scores(validation, "mahalanobis"))
    )
    # Same length as a training vector, wrong direction: a norm score cannot see it.
    skewed = np.tile(np.r_[np.full(CHANNELS // 2, 3.6), np.full(CHANNELS // 2, 1.4)], (20, 1))
    _, flagged = gate.assess(skewed)
    assert flagged.all()
    _, on_class = gate.assess(np.full((5, CHANNELS), 2.0))
    assert not on_class.any()


def test_feature_norm_flags_too_small_and_too_large_vectors() -> None:
    rng = np.random.default_rng(2)
    statistics = fit_statistics(*two_classes(rng, 400))
    validation, _ = two_classes(rng, 200)
    gate = OodGate(
        statistics, "feature_norm", choose_threshold(statistics.scores(validation, "feature_norm"))
    )
    _, flagged = gate.assess(np.stack([np.full(CHANNELS, 0.2), np.full(CHANNELS, 20.0)]))
    assert flagged.tolist() == [True, True]


def test_statistics_survive_the_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    statistics = fit_statistics(*two_classes(rng, 100))
    loaded = load_statistics(save_statistics(statistics, tmp_path))
    probe, _ = two_classes(rng, 10)
    for method in METHODS:
        np.testing.assert_allclose(loaded.scores(probe, method), statistics.scores(probe, method))


def test_unknown_method_is_refused() -> None:
    statistics = fit_statistics(*two_classes(np.random.default_rng(4), 50))
    with pytest.raises(ValueError, match="mahalanobis"):
        statistics.scores(np.ones((1, CHANNELS)), "energy")
