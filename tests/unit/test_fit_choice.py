"""Training uses the fit measured best; cards written before the choice still mean squash."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from client.cli import app
from shared.model_card import ModelCard
from worker.training import fit_choice
from worker.training.reports import render_model_card
from worker.training.trainer import training_preprocessing


def test_training_uses_the_measured_fit_and_records_an_override_as_such() -> None:
    measured = fit_choice.CHOSEN_FIT
    other = "squash" if measured == "letterbox" else "letterbox"
    assert (
        training_preprocessing(96).fit
        == measured
        == fit_choice.measured_best(fit_choice.MEASUREMENTS)
    )
    assert training_preprocessing(96).image_size == 96
    default, override = (
        fit_choice.preprocessing_choice(measured),
        fit_choice.preprocessing_choice(other),
    )
    assert default.fit == measured and override.fit == other
    assert f"over the measured {measured}" in override.rule
    assert default.results == override.results == fit_choice.MEASUREMENTS
    assert len(fit_choice.MEASUREMENTS) >= 2  # one seed is not a measurement of a choice


def test_the_mean_auc_over_seeds_decides_and_the_pointing_game_breaks_ties() -> None:
    def seed(squash_auc, letterbox_auc, squash_pointing=0.9, letterbox_pointing=0.9):
        return {
            "squash": {"auc": squash_auc, "pointing_game": squash_pointing},
            "letterbox": {"auc": letterbox_auc, "pointing_game": letterbox_pointing},
        }

    # One seed each way: the larger margin carries the mean.
    assert fit_choice.measured_best({"a": seed(0.90, 0.98), "b": seed(0.95, 0.93)}) == "letterbox"
    assert fit_choice.measured_best({"a": seed(0.97, 0.93), "b": seed(0.95, 0.96)}) == "squash"
    tied = {"a": seed(0.95, 0.95, 0.80, 0.90), "b": seed(0.96, 0.96, 0.85, 0.90)}
    assert fit_choice.measured_best(tied) == "letterbox"
    assert fit_choice.mean_scores(tied)["squash"] == {"auc": 0.955, "pointing_game": 0.825}


def test_a_card_from_before_the_choice_reads_as_squash_without_a_record() -> None:
    legacy = {"name": "old", "version": "1", "synthetic": True, "preprocessing": {"image_size": 64}}
    card = ModelCard.model_validate(legacy)
    assert card.preprocessing.fit == "squash" and card.preprocessing_choice is None
    assert "Preprocessing: non-square films" not in render_model_card(card)


def test_the_card_shows_the_choice_and_every_seeds_numbers() -> None:
    card = ModelCard(
        name="new",
        version="1",
        synthetic=True,
        preprocessing=training_preprocessing(64),
        preprocessing_choice=fit_choice.preprocessing_choice(fit_choice.CHOSEN_FIT),
    )
    text = render_model_card(card)
    assert f"Fit: **{fit_choice.CHOSEN_FIT}**" in text and fit_choice.MEASURED_BY in text
    for seed, fits in fit_choice.MEASUREMENTS.items():
        for fit, numbers in fits.items():
            assert f"| {seed} | {fit} | {numbers['auc']:.3f} |" in text


def test_train_refuses_an_unknown_fit_before_loading_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--fit", "stretch"]
    )
    assert result.exit_code == 2 and "stretch" in result.output
    assert not (tmp_path / "m").exists()
