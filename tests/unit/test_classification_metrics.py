"""worker.training.classification_metrics against scikit-learn on fixed vectors, plus the
operating-point rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from worker.training import classification_metrics as metrics


def scored_cases(seed: int, count: int = 300, ties: bool = False):
    """Labels and overlapping scores; `ties` rounds the scores so many share a value."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.6).astype(int)
    scores = 1.0 / (1.0 + np.exp(-(1.6 * labels - 0.8 + rng.normal(0, 1.2, count))))
    return labels, np.round(scores, 1) if ties else scores


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_and_aucs_match_scikit_learn(seed: int, ties: bool) -> None:
    labels, scores = scored_cases(seed, ties=ties)
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    expected_fpr, expected_tpr, expected_thresholds = sk.roc_curve(
        labels, scores, drop_intermediate=False
    )
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)
    np.testing.assert_allclose(thresholds[1:], expected_thresholds[1:])
    precision, recall, pr_thresholds = metrics.precision_recall_curve(labels, scores)
    expected = sk.precision_recall_curve(labels, scores)
    for ours, theirs in zip((precision, recall, pr_thresholds), expected, strict=True):
        np.testing.assert_allclose(ours, theirs)
    assert metrics.roc_auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores))
    assert metrics.average_precision(labels, scores) == pytest.approx(
        sk.average_precision_score(labels, scores)
    )


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.71, 0.99])
def test_threshold_metrics_match_scikit_learn(threshold: float) -> None:
    labels, scores = scored_cases(3)
    predicted = (scores >= threshold).astype(int)
    ours = metrics.threshold_metrics(labels, scores, threshold)
    tn, fp, fn, tp = sk.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, predicted), sk.confusion_matrix(labels, predicted)
    )
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert ours["precision"] == pytest.approx(
        sk.precision_score(labels, predicted, zero_division=0)
    )
    assert ours["recall"] == pytest.approx(sk.recall_score(labels, predicted))
    assert ours["specificity"] == pytest.approx(tn / (tn + fp))
    assert ours["f1"] == pytest.approx(sk.f1_score(labels, predicted, zero_division=0))


def test_degenerate_inputs_give_zero_or_nan_not_errors() -> None:
    labels = np.array([0, 0, 0])
    assert math.isnan(metrics.roc_auc(labels, np.array([0.1, 0.2, 0.3])))
    assert math.isnan(metrics.average_precision(labels, np.array([0.1, 0.2, 0.3])))
    assert metrics.threshold_metrics(labels, np.array([0.1, 0.2, 0.3]), 0.9)["precision"] == 0.0


def test_expected_calibration_error_matches_calibration_curve() -> None:
    labels, probabilities = scored_cases(4)
    probabilities = np.r_[probabilities, 0.1, 0.2, 1.0]  # values exactly on bin edges
    labels = np.r_[labels, 0, 1, 1]
    observed, predicted = calibration_curve(labels, probabilities, n_bins=10)
    edges = np.linspace(0, 1, 11)
    counts = np.bincount(np.searchsorted(edges[1:-1], probabilities), minlength=10)
    expected = np.sum(counts[counts > 0] / counts.sum() * np.abs(observed - predicted))
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(expected)


def test_perfectly_calibrated_probabilities_have_small_ece() -> None:
    rng = np.random.default_rng(5)
    probabilities = rng.random(20_000)
    labels = (rng.random(20_000) < probabilities).astype(int)
    assert metrics.expected_calibration_error(labels, probabilities) < 0.02


def test_binary_nll_matches_log_loss() -> None:
    labels, probabilities = scored_cases(6)
    logits = np.log(probabilities / (1 - probabilities))
    assert metrics.binary_nll(labels, logits) == pytest.approx(sk.log_loss(labels, probabilities))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("seed", [8, 10])
def test_sensitivity_threshold_meets_target_with_best_specificity(target: float, seed: int) -> None:
    labels, scores = scored_cases(seed, ties=seed == 8)
    threshold = metrics.sensitivity_threshold(labels, scores, target)
    chosen = metrics.threshold_metrics(labels, scores, threshold)
    assert chosen["recall"] >= target
    # No other cut reaching the target is more specific, or as specific and more sensitive.
    for candidate in np.r_[np.unique(scores), np.inf]:
        other = metrics.threshold_metrics(labels, scores, candidate)
        if other["recall"] >= target:
            assert (other["specificity"], other["recall"]) <= (
                chosen["specificity"],
                chosen["recall"],
            )
    assert not np.any(scores == threshold)  # the cut sits between scores, never on one


def test_separable_validation_gets_a_cut_in_the_gap_catching_every_positive() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0])
    # Sensitivity 0.95 does not license missing a positive when nothing is gained by it.
    assert metrics.sensitivity_threshold(labels, scores, 0.75) == pytest.approx(0.0)
    assert metrics.sensitivity_threshold(np.ones(3), np.array([1.0, 2.0, 3.0]), 0.95) == 0.0


def test_bootstrap_intervals_bracket_the_point_estimate_and_are_reproducible() -> None:
    labels, scores = scored_cases(9)
    first = metrics.bootstrap_metrics(labels, scores, 0.5, resamples=300, seed=1)
    second = metrics.bootstrap_metrics(labels, scores, 0.5, resamples=300, seed=1)
    assert first == second
    assert set(first) == set(metrics.THRESHOLD_METRICS + metrics.RANKING_METRICS)
    for name, entry in first.items():
        low, high = entry["ci95"]
        assert low <= entry["value"] <= high, name
        assert 0.0 < high - low < 0.3, name
    assert first["roc_auc"]["value"] == pytest.approx(sk.roc_auc_score(labels, scores))


def correlated_patients(patients: int, films: int, seed: int):
    """Every film of a patient gets the patient's call: the extreme of films sharing anatomy."""
    rng = np.random.default_rng(seed)
    patient_labels = rng.random(patients) < 0.5
    patient_scores = np.where(patient_labels, rng.normal(0.7, 0.2, patients), 0.3)
    patient_scores += rng.normal(0.0, 0.2, patients)
    labels = np.repeat(patient_labels.astype(int), films)
    scores = np.repeat(patient_scores, films) + rng.normal(0.0, 0.01, patients * films)
    return labels, scores, np.repeat(np.arange(patients), films)


def test_patient_bootstrap_is_wider_than_the_image_bootstrap_when_films_are_correlated() -> None:
    labels, scores, patients = correlated_patients(60, 5, seed=3)
    by_image = metrics.bootstrap_metrics(labels, scores, 0.5, resamples=400, seed=2)
    by_patient = metrics.bootstrap_metrics(labels, scores, 0.5, resamples=400, seed=2,
                                           clusters=patients)  # fmt: skip
    for name in ("accuracy", "recall", "specificity", "roc_auc"):
        assert by_patient[name]["value"] == by_image[name]["value"]
        image_width = np.diff(by_image[name]["ci95"])[0]
        patient_width = np.diff(by_patient[name]["ci95"])[0]
        # Five identical calls per patient: the effective sample is the 60 patients, about
        # sqrt(5) = 2.2 times the image bootstrap's width; 1.5 leaves room for resampling noise.
        assert patient_width > 1.5 * image_width, name


def test_patient_bootstrap_with_one_film_per_patient_matches_the_image_bootstrap() -> None:
    labels, scores = scored_cases(4)
    names = np.array([f"patient-{index:04d}" for index in range(labels.size)])  # same order
    assert metrics.bootstrap_metrics(labels, scores, 0.5, 200, 5, clusters=names) == (
        metrics.bootstrap_metrics(labels, scores, 0.5, 200, 5)
    )


def test_every_resample_keeps_whole_patients_and_both_classes() -> None:
    labels, _, patients = correlated_patients(30, 3, seed=1)
    weights = metrics.cluster_resample_weights(labels, patients, resamples=50, seed=0)
    assert weights.shape == (50, labels.size)
    for row in weights:
        per_patient = row.reshape(30, 3)
        assert np.all(per_patient == per_patient[:, :1])  # a patient's films come together
        assert row[labels == 1].sum() == 3 * len(set(patients[labels == 1]))
        assert row[labels == 0].sum() == 3 * len(set(patients[labels == 0]))


@pytest.mark.parametrize(("successes", "trials"), [(123, 124), (0, 10), (10, 10), (37, 80), (1, 1)])
def test_clopper_pearson_matches_scipy_exact_binomial_interval(successes: int, trials: int) -> None:
    reference = stats.binomtest(successes, trials).proportion_ci(0.95, method="exact")
    low, high = metrics.clopper_pearson(successes, trials)
    assert low == pytest.approx(reference.low, abs=1e-12)
    assert high == pytest.approx(reference.high, abs=1e-12)


def test_exact_intervals_of_sensitivity_and_specificity_come_from_the_confusion_counts() -> None:
    # The case: specificity 123/124, where the percentile bootstrap said 0.976-1.000.
    labels = np.r_[np.zeros(124, int), np.ones(50, int)]
    scores = np.r_[np.zeros(123), 1.0, np.ones(48), np.zeros(2)]
    exact = metrics.exact_rate_intervals(labels, scores, 0.5)
    assert (exact["specificity"]["successes"], exact["specificity"]["trials"]) == (123, 124)
    assert (exact["recall"]["successes"], exact["recall"]["trials"]) == (48, 50)
    low, high = exact["specificity"]["ci95"]
    assert low == pytest.approx(0.9559, abs=5e-4) and high == pytest.approx(0.9998, abs=5e-4)
    assert metrics.clopper_pearson(0, 0) == [None, None]
