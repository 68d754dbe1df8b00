"""Platt scaling (worker.training.calibration) against known answers: a logistic model it must
recover, the prior shift class weights cause, separable validation sets, and old cards that
carry only a temperature."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from shared.model_card import Calibration, ModelCard
from worker.training import calibration as platt
from worker.training import classification_metrics as metrics

KERMANY_PNEUMONIA_SHARE = 3875 / (3875 + 1341)  # Kermany's training split


def logistic_cases(slope: float, intercept: float, count: int, seed: int):
    """Logits z and labels drawn from P(pneumonia | z) = sigmoid(slope z + intercept)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, count)
    labels = (rng.random(count) < metrics.sigmoid(slope * logits + intercept)).astype(int)
    return labels, logits


def test_platt_fit_recovers_a_known_logistic_model() -> None:
    labels, logits = logistic_cases(slope=0.4, intercept=0.8, count=6_000, seed=0)
    calibration = platt.fit_calibration(labels, logits)
    assert calibration.guard == "none" and calibration.reason == ""
    assert calibration.slope == pytest.approx(0.4, abs=0.05)
    assert calibration.intercept == pytest.approx(0.8, abs=0.12)


def test_without_guards_the_fit_is_scikit_learns_unpenalised_logistic_regression() -> None:
    labels, logits = logistic_cases(slope=1.7, intercept=-0.6, count=2_000, seed=1)
    fit = platt.fit_platt(labels, logits, smoothing=False, prior_strength=0.0)
    regression = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1_000)
    regression.fit(logits[:, None], labels)
    assert fit.converged
    assert fit.slope == pytest.approx(regression.coef_[0, 0], rel=1e-4)
    assert fit.intercept == pytest.approx(regression.intercept_[0], abs=1e-4)


def test_intercept_undoes_the_prior_shift_of_inverse_frequency_class_weights() -> None:
    """Class weights n/(2 n_c) move the logit by log(n_normal / n_pneumonia), about -1.06 at
    Kermany's balance; a slope alone (temperature scaling) cannot move it back."""
    rng = np.random.default_rng(2)
    labels = (rng.random(8_000) < KERMANY_PNEUMONIA_SHARE).astype(int)
    # Equal-variance class-conditional logits: the true posterior logit is linear in them.
    evidence = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)
    prior_logit = math.log(KERMANY_PNEUMONIA_SHARE / (1 - KERMANY_PNEUMONIA_SHARE))
    weighted_model_logits = 2.0 * evidence  # the true posterior logit minus the prior logit
    calibration = platt.fit_calibration(labels, weighted_model_logits)
    assert prior_logit == pytest.approx(1.06, abs=0.02)
    assert calibration.intercept == pytest.approx(prior_logit, abs=0.15)
    assert calibration.slope == pytest.approx(1.0, abs=0.1)
    report = platt.calibration_report(labels, weighted_model_logits, calibration)
    assert report["validation_ece"]["after"] < report["validation_ece"]["before"] / 2
    assert report["validation_nll"]["after"] < report["validation_nll"]["before"]


def test_separable_validation_set_is_guarded_and_flagged() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(60), np.zeros(40)].astype(int)
    logits = np.r_[rng.uniform(3, 12, 60), rng.uniform(-12, -3, 40)]
    unguarded = platt.fit_platt(labels, logits, smoothing=False, prior_strength=0.0)
    # The likelihood keeps rising with the slope; the unguarded fit stops only when the gain
    # underflows, with every answer saturated: the p = 1.000 of the issue.
    saturated = metrics.sigmoid(unguarded.slope * logits + unguarded.intercept)
    assert saturated.min() < 1e-9 and saturated.max() > 1 - 1e-9
    calibration = platt.fit_calibration(labels, logits)
    assert calibration.guard == "regularised"
    assert "separate" in calibration.reason
    assert 0.1 < calibration.slope < unguarded.slope / 4
    probabilities = metrics.sigmoid(platt.calibrated_logits(calibration, logits))
    # 100 cases without an error cannot justify certainty: no 1.000 or 0.000 answers.
    assert 1e-5 < probabilities.min() and probabilities.max() < 1 - 1e-5
    report = platt.calibration_report(labels, logits, calibration)
    assert report["validation_separable"] is True  # a plain bool: the report goes into JSON


def test_calibration_lowers_ece_of_an_overconfident_model() -> None:
    labels, logits = logistic_cases(slope=1.0, intercept=0.0, count=4_000, seed=4)
    overconfident = 4.0 * logits
    calibration, report = platt.calibrate(labels, overconfident)
    assert calibration.slope == pytest.approx(0.25, abs=0.04)
    ece = report["validation_ece"]
    assert ece["after"] < 0.03 < ece["before"]
    bins = report["reliability"]["after"]
    assert len(bins) == 10 and sum(entry["count"] for entry in bins) == labels.size


@pytest.mark.parametrize(
    ("labels", "logits", "reason"),
    [
        (np.ones(20, int), np.linspace(-2, 2, 20), "one class"),
        (
            np.r_[np.ones(50), np.zeros(50)].astype(int),
            np.r_[-np.ones(50), np.ones(50)] * 4,
            "rank",
        ),
    ],
)
def test_unusable_fits_fall_back_to_the_identity_and_say_why(labels, logits, reason) -> None:
    calibration = platt.fit_calibration(labels, logits)
    assert calibration.guard == "fallback" and reason in calibration.reason
    assert (calibration.slope, calibration.intercept) == (1.0, 0.0)


def test_raw_logit_inverts_the_calibration() -> None:
    calibration = Calibration(method="test", slope=0.3, intercept=-1.2)
    for logit in (-7.0, 0.0, 2.5):
        assert calibration.raw_logit(calibration.calibrated_logit(logit)) == pytest.approx(logit)


def test_old_cards_with_only_a_temperature_read_as_slope_one_over_t() -> None:
    card = ModelCard.model_validate({"name": "old", "version": "1", "synthetic": True,
                                     "temperature": 0.125})  # fmt: skip
    assert card.calibration.slope == pytest.approx(8.0)
    assert card.calibration.intercept == 0.0
    assert "legacy" in card.calibration.method
    assert "temperature" not in card.model_dump()
    with pytest.raises(ValidationError, match="temperature"):
        ModelCard.model_validate({"name": "bad", "version": "1", "synthetic": True,
                                  "temperature": 0.0})  # fmt: skip
