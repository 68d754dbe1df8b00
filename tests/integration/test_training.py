"""Train a small CNN on phantoms, then hold the artifact, its threshold and its report to account.

One model is trained per module (64 px input, narrow blocks) so the whole file stays well inside
the CI budget on two cores; every test reads that artifact.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from shared.model_card import ModelCard
from worker.model.architecture import Architecture
from worker.model.artifact import read_card
from worker.model.runtime import ModelRuntime
from worker.phantoms.kermany import write_kermany_dataset
from worker.training import classification_metrics as metrics
from worker.training.datasets import MANIFEST_FILE, load_dataset
from worker.training.evaluation import evaluate_model, predict_files, predict_images
from worker.training.fit_choice import CHOSEN_FIT, SCORED
from worker.training.reports import PLOTS, metrics_table, write_report
from worker.training.trainer import (
    ModelIdentity,
    TrainingConfig,
    train_model,
    training_pipeline,
    training_preprocessing,
)

pytestmark = pytest.mark.slow

IMAGE_SIZE = 64
TARGET_SENSITIVITY = 0.95
CONFIG = TrainingConfig(
    epochs=6,
    batch_size=16,
    patience=6,
    seed=0,
    target_sensitivity=TARGET_SENSITIVITY,
    architecture=Architecture(image_size=IMAGE_SIZE, block_filters=(8, 16, 32, 64), dense_units=32),
)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("phantoms") / "chest_xray"
    write_kermany_dataset(
        directory,
        count=640,
        size=128,
        seed=11,
        prevalence=0.55,
        split_fractions=(0.7, 0.05, 0.25),
        images_per_patient=(1, 3),
    )
    return directory


@pytest.fixture(scope="module")
def trained(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    params = training_preprocessing(IMAGE_SIZE)
    dataset = load_dataset(phantom_dir, params, splits=("train", "val"), seed=CONFIG.seed)
    model_dir = tmp_path_factory.mktemp("model")
    started = time.perf_counter()
    card = train_model(dataset, params, model_dir, CONFIG, ModelIdentity(synthetic=True))
    return model_dir, card, dataset, time.perf_counter() - started


@pytest.fixture(scope="module")
def evaluation(trained, phantom_dir: Path):
    model_dir = trained[0]
    return evaluate_model(model_dir, phantom_dir, split="test", resamples=300)


def epoch_batches(pipeline) -> list[np.ndarray]:
    return [images.numpy() for images, _ in pipeline]


def test_augmentation_stream_is_seeded_varies_by_epoch_and_stays_on_the_uint8_grid() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 2, 12)
    config = TrainingConfig(batch_size=4, seed=5, architecture=Architecture(image_size=32))
    first, second = (
        training_pipeline(images, labels, config),
        training_pipeline(images, labels, config),
    )
    first_epoch, repeat_epoch = epoch_batches(first), epoch_batches(second)
    for ours, theirs in zip(first_epoch, repeat_epoch, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    next_epoch = epoch_batches(first)
    assert not all(np.array_equal(a, b) for a, b in zip(first_epoch, next_epoch, strict=True))
    stacked = np.concatenate(first_epoch)
    assert stacked.shape == (12, 32, 32, 1)
    assert stacked.min() >= 0 and stacked.max() <= 255 and np.all(stacked == np.round(stacked))
    assert not np.array_equal(np.sort(stacked.ravel()), np.sort(images.ravel()))  # augmented


def test_a_few_epochs_separate_held_out_phantoms_within_two_minutes(trained, evaluation) -> None:
    seconds = trained[3]
    summary = evaluation.summary
    assert summary["data"]["split"] == "test" and summary["images"] >= 140
    # Measured 0.976-0.991 over four trainings (oneDNN on and off, one thread and all, two seeds).
    assert summary["roc_auc"]["value"] >= 0.9, summary["roc_auc"]
    assert seconds < 120, f"training took {seconds:.0f} s"


def test_chosen_threshold_meets_target_sensitivity_on_validation(trained) -> None:
    model_dir, card, dataset, _ = trained
    assert card.threshold.target_sensitivity == TARGET_SENSITIVITY
    assert card.threshold.validation_sensitivity >= TARGET_SENSITIVITY
    assert "sensitivity >= 0.95" in card.threshold.rule
    # The worker's own runtime, reading model.json, reaches it on the same validation images.
    runtime = ModelRuntime.from_directory(model_dir)
    validation = dataset.splits["val"]
    served = predict_images(runtime, validation.images)
    achieved = metrics.threshold_metrics(validation.labels, served, runtime.threshold)
    assert achieved["recall"] >= TARGET_SENSITIVITY
    assert achieved["specificity"] == pytest.approx(card.threshold.validation_specificity)
    assert runtime.threshold == card.threshold.value


def test_artifact_directory_holds_card_history_and_patient_disjoint_manifest(trained) -> None:
    model_dir, card, dataset, _ = trained
    assert read_card(model_dir).model_dump(mode="json") == card.model_dump(mode="json")
    assert card.synthetic and card.calibration.slope > 0
    assert card.calibration.guard in {"none", "regularised"}, card.calibration.reason
    assert card.preprocessing.image_size == IMAGE_SIZE
    # Trained with the measured fit by default, the choice and every seed's numbers in the card.
    assert card.preprocessing.fit == CHOSEN_FIT and card.preprocessing_choice is not None
    assert card.preprocessing_choice.fit == CHOSEN_FIT
    assert {"seed 0", "seed 1"} <= set(card.preprocessing_choice.results)
    for fits in card.preprocessing_choice.results.values():
        assert set(fits) == {"squash", "letterbox"}
        assert all(0 <= numbers[name] <= 1 for numbers in fits.values() for name in SCORED)
    assert card.data["fingerprint"] == dataset.fingerprint
    assert {"keras", "tensorflow", "numpy"} <= set(card.library_versions)
    assert "validation" in card.metrics and "calibration" in card.metrics
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    patients = {
        split: {e["patient"] for e in manifest["files"][split]} for split in manifest["files"]
    }
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    history = json.loads((model_dir / "history.json").read_text())
    assert history["epochs"] == len(history["val_auc"]) >= 1
    assert (model_dir / "history.csv").read_text().startswith("epoch,")
    model_card_text = (model_dir / "MODEL_CARD.md").read_text()
    assert "Not a diagnosis" in model_card_text and "Synthetic model" in model_card_text
    assert "## Calibration" in model_card_text and "](calibration.png)" in model_card_text
    assert "## Preprocessing: non-square films" in model_card_text
    assert f"Fit: **{CHOSEN_FIT}**" in model_card_text and "| seed 1 | squash |" in model_card_text
    assert (model_dir / "calibration.png").read_bytes().startswith(b"\x89PNG")
    assert not (model_dir / ".checkpoint").exists()


def test_offline_prediction_of_files_equals_the_evaluated_probabilities(
    trained, evaluation, phantom_dir: Path
) -> None:
    model_dir = trained[0]
    test_files = json.loads((model_dir / MANIFEST_FILE).read_text())["files"]["test"]
    chosen = [0, 1, len(test_files) // 2, len(test_files) - 1]
    paths = [phantom_dir / test_files[index]["file"] for index in chosen]
    probabilities = predict_files(model_dir, paths)
    np.testing.assert_allclose(probabilities, evaluation.probabilities[chosen], rtol=1e-6)


def test_report_has_metrics_with_intervals_plots_and_markdown(
    trained, evaluation, tmp_path
) -> None:
    model_dir = trained[0]
    report = write_report(evaluation, model_dir, tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for name in metrics.THRESHOLD_METRICS + metrics.RANKING_METRICS:
        low, high = written[name]["ci95"]
        assert low <= written[name]["value"] <= high
    assert np.sum(written["confusion_matrix"]) == written["images"]
    # Phantom patients have 1-3 films: the bootstrap resampled fewer patients than films.
    assert 0 < written["patients"] < written["images"]
    (tn, fp), (fn, tp) = written["confusion_matrix"]
    exact = written["exact_ci95"]
    assert (exact["recall"]["successes"], exact["recall"]["trials"]) == (tp, tp + fn)
    assert (exact["specificity"]["successes"], exact["specificity"]["trials"]) == (tn, tn + fp)
    assert "Specificity, exact" in report.read_text()
    assert 0 <= written["calibration"]["ece"] <= 1
    assert 0 <= written["calibration"]["before"]["ece"] <= 1
    assert written["calibration"]["slope"] == trained[1].calibration.slope
    assert "ECE before calibration" in report.read_text()
    for name in PLOTS:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
        assert f"]({name})" in report.read_text()
    console = Console(record=True, width=120)
    console.print(metrics_table(written, "test"))
    assert "ROC-AUC" in console.export_text()


def test_evaluate_command_writes_report_and_records_metrics_in_card(
    trained, phantom_dir: Path, tmp_path: Path
) -> None:
    from client.cli import app

    model_dir = trained[0]
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(phantom_dir),
            "--out",
            str(out),
            "--bootstrap",
            "200",
            "--update-card",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
    # The histogram baseline sits beside the model: fitted on the training split, same images.
    baseline = json.loads((out / "metrics.json").read_text())["histogram_baseline"]
    assert 0.0 <= baseline["roc_auc"] <= 1.0 and baseline["train_images"] > 0
    assert "Histogram baseline" in result.output
    assert "Histogram baseline" in (out / "report.md").read_text()
    card = ModelCard.model_validate_json((model_dir / "model.json").read_text())
    assert card.metrics["test"]["roc_auc"]["value"] >= 0.9
    assert card.sha256 == trained[1].sha256  # recording metrics leaves the weights alone


def test_train_command_records_an_overridden_fit_as_an_override(tmp_path: Path) -> None:
    from client.cli import app

    fit = "squash" if CHOSEN_FIT == "letterbox" else "letterbox"
    data = tmp_path / "chest_xray"
    write_kermany_dataset(data, count=60, size=64, seed=3, split_fractions=(0.7, 0.15, 0.15))
    arguments = ["--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1"]
    result = CliRunner().invoke(app, ["train", *arguments, "--image-size", "32", "--fit", fit])
    assert result.exit_code == 0, result.output
    card = read_card(tmp_path / "m")
    assert card.preprocessing.fit == fit and card.preprocessing_choice is not None
    assert card.preprocessing_choice.fit == fit
    assert f"chosen by whoever trained it over the measured {CHOSEN_FIT}" in (
        card.preprocessing_choice.rule
    )


def test_training_fits_an_ood_gate_with_at_most_five_percent_validation_false_flags(
    trained,
) -> None:
    model_dir, card, dataset, _ = trained
    gate = card.ood
    assert gate is not None and gate.method in ("mahalanobis", "feature_norm")
    assert gate.validation_false_flag_rate <= 0.05
    assert set(gate.candidates["measured"]) == {"mahalanobis", "feature_norm"}
    assert (model_dir / gate.file).is_file() and len(gate.sha256) == 64
    # The worker's runtime reaches the same false-flag rate on the same validation images.
    runtime = ModelRuntime.from_directory(model_dir)
    served = runtime.predict(dataset.splits["val"].images)
    flagged = [prediction.ood.flagged for prediction in served if prediction.ood is not None]
    assert len(flagged) == len(served)
    assert np.mean(flagged) == pytest.approx(gate.validation_false_flag_rate, abs=0.03)


def test_ood_benchmark_flags_foreign_inputs_and_spares_held_out_phantoms(evaluation) -> None:
    report = evaluation.summary["ood"]
    assert report["in_distribution"]["images"] >= 140
    # The threshold keeps validation false flags <= 5 % on ~75 films, so on ~160 test films the
    # rate moves with the kernels: measured 0.069-0.119 over four trainings (oneDNN on and off,
    # one thread and all, two seeds; one thread crossed the old 0.10 line).
    assert report["in_distribution"]["flag_rate"] <= 0.2, report["in_distribution"]
    assert report["foreign"]["flag_rate"] >= 0.95, report["categories"]
    assert set(report["categories"]) == {
        "natural_images", "text_documents", "noise", "gradients", "inverted_films",
        "rotated_films", "cropped_views", "lateral_views", "unseen_style_phantoms",
    }  # fmt: skip
    for name, category in report["categories"].items():
        assert category["images"] >= 20
        assert category["flag_rate"] >= 0.8, (name, category)


def test_a_tampered_ood_file_is_refused(trained, tmp_path: Path) -> None:
    import shutil

    from worker.model.artifact import ArtifactError

    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    with (copy / "ood.npz").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="ood.npz"):
        ModelRuntime.from_directory(copy)
