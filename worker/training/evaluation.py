"""Offline evaluation through the serving code path: `ModelRuntime` on `load_radiograph` output.

`predict_files` is what a served prediction must equal for the same file; the evaluation of a
whole split uses the same runtime on the same preprocessed pixels (read from the decode cache).
No plotting here: `worker.training.reports` turns an `Evaluation` into files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.model_card import ModelCard, OodChoice
from worker.model.artifact import read_card, write_card
from worker.model.runtime import ModelRuntime
from worker.training import classification_metrics as metrics
from worker.training.datasets import MANIFEST_FILE, SPLITS, load_dataset
from worker.training.decode_cache import decode_files
from worker.training.ood_benchmark import detection_report, foreign_inputs

CALIBRATION_BINS = 10


@dataclass
class Evaluation:
    summary: dict  # the content of metrics.json
    labels: np.ndarray
    probabilities: np.ndarray  # calibrated P(pneumonia), as served


def predict_images(runtime: ModelRuntime, images: np.ndarray) -> np.ndarray:
    """Calibrated P(pneumonia) for preprocessed (N, S, S) uint8 images."""
    return np.array([prediction.probability for prediction in runtime.predict(images)])


def predict_files(model_dir: Path, paths: list[Path]) -> np.ndarray:
    """P(pneumonia) for image files, exactly as a worker would serve them."""
    runtime = ModelRuntime.from_directory(model_dir)
    return predict_images(runtime, decode_files(list(paths), runtime.card.preprocessing))


def calibration_summary(
    labels: np.ndarray, probabilities: np.ndarray, raw_logits: np.ndarray, card: ModelCard
) -> dict:
    """ECE and reliability bins of the served probabilities, and "before": the same of
    sigmoid(raw logit), what the model would say without the card's calibration."""
    uncalibrated = metrics.sigmoid(raw_logits)
    return {
        "ece": metrics.expected_calibration_error(labels, probabilities, CALIBRATION_BINS),
        "bins": metrics.reliability_bins(labels, probabilities, CALIBRATION_BINS),
        **card.calibration.model_dump(),
        "before": {
            "ece": metrics.expected_calibration_error(labels, uncalibrated, CALIBRATION_BINS),
            "bins": metrics.reliability_bins(labels, uncalibrated, CALIBRATION_BINS),
        },
    }


def summarize(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    resamples: int,
    seed: int,
    patients: np.ndarray | None = None,
) -> dict:
    """metrics.json: every metric with a patient-level bootstrap 95% CI, exact intervals for
    sensitivity and specificity, and the confusion matrix (the caller adds calibration, which
    needs the raw logits)."""
    labels = np.asarray(labels).astype(int)
    intervals = metrics.bootstrap_metrics(
        labels, probabilities, threshold, resamples, seed, clusters=patients
    )
    patient_count = labels.size if patients is None else len(set(patients.tolist()))
    return {
        **intervals,
        "exact_ci95": metrics.exact_rate_intervals(labels, probabilities, threshold),
        "threshold": float(threshold),
        "confusion_matrix": metrics.confusion_matrix(labels, probabilities >= threshold).tolist(),
        "confusion_matrix_layout": "[[TN, FP], [FN, TP]]; rows = truth, columns = prediction",
        "images": int(labels.size),
        "pneumonia": int(labels.sum()),
        "patients": int(patient_count),
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "method": "percentile; whole patients resampled within patient class",
        },
        "exact_ci95_method": "Clopper-Pearson on image counts (treats a patient's films as "
        "independent; the bootstrap interval accounts for patients)",
    }


def training_split_settings(model_dir: Path) -> dict:
    """The seed and validation fraction the model was trained with, so `val` is the same split."""
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return {}
    manifest = json.loads(manifest_path.read_text())
    return {key: manifest[key] for key in ("seed", "validation_fraction") if key in manifest}


def evaluate_model(
    model_dir: Path,
    data_path: Path,
    *,
    split: str = "test",
    resamples: int = 1000,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Evaluation:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    runtime = ModelRuntime.from_directory(model_dir)
    dataset = load_dataset(
        data_path,
        runtime.card.preprocessing,
        splits=(split,),
        cache_dir=cache_dir,
        **training_split_settings(model_dir),
    )
    data = dataset.splits[split]
    predictions = runtime.predict(data.images)
    probabilities = np.array([prediction.probability for prediction in predictions])
    raw_logits = np.array([prediction.logit for prediction in predictions])
    summary = summarize(
        data.labels, probabilities, runtime.threshold, resamples, seed, data.patients
    )
    summary["calibration"] = calibration_summary(
        data.labels, probabilities, raw_logits, runtime.card
    )
    summary["model"] = runtime.card.info().model_dump()
    summary["data"] = {
        "path": str(data_path),
        "split": split,
        "fingerprint": dataset.fingerprint,
        "source": dataset.manifest["source"]["kind"],
    }
    summary["ood"] = ood_benchmark(runtime, data.images, predictions, seed)
    return Evaluation(summary, data.labels, probabilities)


OOD_BENCHMARK_PER_CATEGORY = 40


def _scores(predictions) -> np.ndarray:
    return np.array([prediction.ood.score for prediction in predictions if prediction.ood])


def ood_benchmark(runtime: ModelRuntime, images: np.ndarray, predictions, seed: int) -> dict:
    """The served gate on the split (in distribution: flags there are false) and on foreign
    inputs made from it and from the generators (`worker.training.ood_benchmark`)."""
    gate = runtime.card.ood
    if gate is None:
        return {"method": None, "note": "this model has no OOD gate: results say not_assessed"}
    split_scores = _scores(predictions)
    foreign = foreign_inputs(images, runtime.card.preprocessing, OOD_BENCHMARK_PER_CATEGORY, seed)
    foreign_scores = {name: _scores(runtime.predict(inputs)) for name, inputs in foreign.items()}
    return {
        "method": gate.method,
        **detection_report(split_scores, foreign_scores, gate.threshold),
    }


def record_in_card(model_dir: Path, evaluation: Evaluation) -> ModelCard:
    """Put an evaluation's numbers into model.json (weights and checksum stay as they are)."""
    card = read_card(model_dir)
    summary = evaluation.summary
    entry = {name: summary[name] for name in metrics.THRESHOLD_METRICS + metrics.RANKING_METRICS}
    entry.update(
        ece=summary["calibration"]["ece"],
        ece_before_calibration=summary["calibration"]["before"]["ece"],
        threshold=summary["threshold"],
        confusion_matrix=summary["confusion_matrix"],
        exact_ci95=summary["exact_ci95"],
        images=summary["images"],
        patients=summary["patients"],
        data=summary["data"],
    )
    card = card.model_copy(update={"metrics": {**card.metrics, summary["data"]["split"]: entry}})
    if card.ood is not None and summary.get("ood", {}).get("method"):
        card = card.model_copy(update={"ood": ood_with_benchmark(card.ood, summary)})
    write_card(card, model_dir)
    return card


def ood_with_benchmark(gate: OodChoice, summary: dict) -> OodChoice:
    """The gate's card entry with the benchmark measured on this (held-out) split."""
    report = summary["ood"]
    return gate.model_copy(
        update={
            "benchmark_detection_rate": report["foreign"]["flag_rate"],
            "benchmark": {**report, "measured_on": f"{summary['data']['split']} split + "
                          "generated foreign inputs"},
        }
    )  # fmt: skip
