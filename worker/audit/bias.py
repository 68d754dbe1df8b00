"""The border-bias experiment: learn a scanner-artefact shortcut, catch it, try a generic
remedy, and measure both on an artefact the remedy was designed for and one it was not.

1. Phantoms where, in train+val, a fraction `correlation` of films carry the artefact exactly
   when they are PNEUMONIA (the rest: on a random half), `write_kermany_dataset`'s policy.
2. Three test sets of the same patients (counterfactual: only the artefact differs): `clean`
   (none), `independent` (a random half of the films) and `flipped` (NORMAL films only).
3. "before": the training pipeline as it is. "after": the same pipeline, data, epochs and
   settings plus random erasing of every training film's border
   (`worker.audit.artifact_augmentation`), which knows nothing of the generator's artefacts.
4. Both are scored on the three test sets through the serving runtime; optionally audited with
   `worker.audit.explanations` on the independent set (masks and artefact positions known).

`worker.audit.bias_grid` repeats this over correlations, seeds and artefacts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker.audit.artifact_augmentation import augmented_images
from worker.audit.data import load_audit_data, predict_and_upsample, served_probabilities
from worker.audit.explanations import audit_model
from worker.audit.report import write_audit_report
from worker.model.architecture import Architecture
from worker.model.runtime import ModelRuntime
from worker.phantoms.kermany import CLASS_NAMES, MANIFEST_NAME, write_kermany_dataset
from worker.phantoms.radiograph import Phantom, generate_phantom
from worker.training import classification_metrics as metrics
from worker.training.datasets import load_dataset
from worker.training.trainer import (
    ModelIdentity,
    TrainingConfig,
    train_model,
    training_preprocessing,
)

log = logging.getLogger(__name__)

TEST_SETS = ("clean", "independent", "flipped")
TEST_METRICS = ("accuracy", "recall", "specificity", "roc_auc")
VARIANTS = {
    "before": "the training pipeline as it is",
    "after": "the same pipeline + random erasing of each training film's border (both classes)",
}


@dataclass(frozen=True)
class BiasConfig:
    """One cell of the grid. Small on purpose, so the grid (2 x 24 trainings) stays affordable on
    a couple of cores: 96 px films, 64 px model inputs, the same epochs for both variants. The
    defaults are what `pneumo bias-experiment` and tests/integration/test_audit.py run."""

    artifact: str = "border_band"
    correlation: float = 1.0  # share of train/val films whose artefact marks PNEUMONIA exactly
    count: int = 400  # train + validation phantoms
    test_count: int = 120  # per test set
    film_size: int = 96
    image_size: int = 64
    block_filters: tuple[int, ...] = (8, 16, 32)  # a 16 x 16 Grad-CAM grid at 64 px
    epochs: int = 8  # before and after alike
    patience: int = 3
    seed: int = 0
    audit: bool = True  # the Grad-CAM audit of both models (the grid skips it)
    audit_limit: int = 80
    deletion_limit: int = 24
    sanity_limit: int = 12


@dataclass
class BiasResult:
    summary: dict  # the content of bias.json
    audits: dict = field(default_factory=dict)  # variant -> worker.audit.explanations.AuditResult
    test_dirs: dict[str, Path] = field(default_factory=dict)
    model_dirs: dict[str, Path] = field(default_factory=dict)
    panels: dict[str, list] = field(default_factory=dict)  # variant -> (image, map, caption)s


def artifact_policy(name: str, label: int, rng: np.random.Generator) -> bool:
    """Whether a test film of this class carries the artefact, in test set `name`."""
    if name == "clean":
        return False
    if name == "flipped":
        return label == 0
    return bool(rng.random() < 0.5)


def write_test_set(out_dir: Path, name: str, config: BiasConfig) -> Path:
    """Balanced Kermany-layout test split with masks and a manifest; patient i is the same
    phantom in every test set (one seed per patient), so only the artefact differs."""
    entries = []
    for index in range(config.test_count):
        label = index % 2
        drawn = artifact_policy(name, label, np.random.default_rng([config.seed, index, 7]))
        phantom = generate_phantom(
            np.random.default_rng([config.seed, 10_000 + index]),
            config.film_size,
            pneumonia=bool(label),
            artifact=config.artifact if drawn else None,
        )
        stem = f"person{index}_bacteria_{index}" if label else f"NORMAL2-IM-{index:04d}-0001"
        entries.append(write_film(out_dir, stem, phantom))
    manifest = {"generator": __name__, "synthetic": True, "test_set": name, "files": entries}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return out_dir


def write_film(out_dir: Path, stem: str, phantom: Phantom) -> dict:
    class_name = CLASS_NAMES[phantom.label]
    entry: dict[str, Any] = {  # a manifest record, as JSON
        "path": f"test/{class_name}/{stem}.png",
        "split": "test",
        "label": phantom.label,
        "class_name": class_name,
        "artifact": phantom.artifact,
    }
    pictures = {"path": phantom.image}
    for kind, mask in (("lung", phantom.lung_mask), ("lesion", phantom.lesion_mask)):
        entry[f"{kind}_mask"] = f"masks/test/{class_name}/{stem}_{kind}.png"
        pictures[f"{kind}_mask"] = mask.astype(np.uint8) * 255
    for key, pixels in pictures.items():
        (out_dir / entry[key]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out_dir / entry[key])
    return entry


def write_training_data(out_dir: Path, config: BiasConfig) -> Path:
    write_kermany_dataset(
        out_dir,
        count=config.count,
        size=config.film_size,
        seed=config.seed,
        prevalence=0.5,
        split_fractions=(0.85, 0.15, 0.0),
        artifact=config.artifact,
        artifact_correlation=config.correlation,
        images_per_patient=(1, 2),
    )
    return out_dir


def train_variant(name: str, data_dir: Path, model_dir: Path, config: BiasConfig) -> Path:
    """The pipeline's own preprocessing for both; "after" border-erases the training films."""
    params = training_preprocessing(config.image_size)
    dataset = load_dataset(data_dir, params, splits=("train", "val"), seed=config.seed)
    if name == "after":
        # Training films only: validation picks the epoch, the temperature and the threshold,
        # so it must look like what will be served, and served films are never erased.
        files = [item["file"] for item in dataset.manifest["files"]["train"]]
        dataset.splits["train"].images = augmented_images(data_dir, files, params, config.seed)
    architecture = Architecture(config.image_size, config.block_filters, dense_units=32)
    training = TrainingConfig(
        epochs=config.epochs,
        batch_size=16,
        patience=config.patience,
        seed=config.seed,
        architecture=architecture,
    )
    identity = ModelIdentity(name=f"bias-{name}", version="0.0.1", synthetic=True)
    train_model(dataset, params, model_dir, training, identity)
    return model_dir


def score_test_set(runtime: ModelRuntime, test_dir: Path) -> dict:
    data = load_audit_data(test_dir, runtime.card.preprocessing)
    probabilities = served_probabilities(runtime, data.images)
    scores = metrics.threshold_metrics(data.labels, probabilities, runtime.threshold)
    scores["roc_auc"] = metrics.roc_auc(data.labels, probabilities)
    return {name: scores[name] for name in TEST_METRICS}


def flipped_panels(runtime: ModelRuntime, flipped_dir: Path, count: int = 6) -> list:
    """Grad-CAM overlays of a few films of the flipped set (NORMAL with the artefact,
    PNEUMONIA without), as served, for the side-by-side figure."""
    data = load_audit_data(flipped_dir, runtime.card.preprocessing, limit=count)
    predictions, maps = predict_and_upsample(runtime, data.images)
    return [
        (image, cam, f"{CLASS_NAMES[label]} -> {prediction.label} p={prediction.probability:.2f}")
        for image, cam, label, prediction in zip(
            data.images, maps["gradcam"], data.labels, predictions, strict=True
        )
    ]


def run_bias_experiment(config: BiasConfig, out_dir: Path, work_dir: Path) -> BiasResult:
    """Everything above; writes out_dir/{bias.json, <variant>/audit...} and returns the result."""
    import keras

    started = time.perf_counter()
    data_dir = write_training_data(work_dir / "phantoms", config)
    result = BiasResult({"config": asdict(config), "variants": {}})
    result.test_dirs = {
        name: write_test_set(work_dir / f"test-{name}", name, config) for name in TEST_SETS
    }
    log.info("Phantoms written in %.1f s", time.perf_counter() - started)
    for name in VARIANTS:
        started = time.perf_counter()
        keras.utils.set_random_seed(config.seed)  # both variants start from the same weights
        model_dir = train_variant(name, data_dir, work_dir / "models" / name, config)
        log.info("Trained %s in %.1f s", name, time.perf_counter() - started)
        started = time.perf_counter()
        result.model_dirs[name] = model_dir
        assess_variant(name, model_dir, config, result, out_dir / name)
        log.info("Scored %s in %.1f s", name, time.perf_counter() - started)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bias.json").write_text(json.dumps(result.summary, indent=1) + "\n")
    return result


def assess_variant(
    name: str, model_dir: Path, config: BiasConfig, result: BiasResult, report_dir: Path
) -> None:
    """Test-set scores; with config.audit, the audit (report in report_dir) and the panels."""
    runtime = ModelRuntime.from_directory(model_dir)
    tests = {test: score_test_set(runtime, path) for test, path in result.test_dirs.items()}
    result.summary["variants"][name] = {"description": VARIANTS[name], "test": tests}
    if not config.audit:
        return
    audit = audit_model(
        model_dir,
        result.test_dirs["independent"],
        limit=config.audit_limit,
        deletion_limit=config.deletion_limit,
        sanity_limit=config.sanity_limit,
        seed=config.seed,
    )
    # The test sets live in a scratch folder: name them by what they are, not where they were.
    audit.summary["data"]["path"] = "independent test set (regenerated by the experiment)"
    write_audit_report(audit, report_dir)
    result.audits[name] = audit
    result.panels[name] = flipped_panels(runtime, result.test_dirs["flipped"])
    result.summary["variants"][name] |= {
        "audit": audit.summary["methods"],
        "audit_data": audit.summary["data"],
    }
