"""The border-bias experiment: learn a scanner-artefact shortcut, catch it, fix it, measure both.

1. Phantoms where the artefact is drawn on every PNEUMONIA film and no NORMAL one in train+val
   (`write_kermany_dataset(artifact_correlation=1.0)`): the seed project's border bias.
2. Three test sets of the same patients (counterfactual: only the artefact differs): `clean`
   (none), `independent` (a random half of the films) and `flipped` (NORMAL films only).
3. "before": the training pipeline with border trimming off and no artefact augmentation.
   "after": the fix, border trimming on (also at serving) plus artefact augmentation on every
   train and validation film of both classes (`worker.audit.artifact_augmentation`).
4. Both are scored on the three test sets through the serving runtime and audited with
   `worker.audit.explanations` on the independent set (masks and artefact positions known).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.imaging import PreprocessParams
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
from worker.training.trainer import ModelIdentity, TrainingConfig, train_model

log = logging.getLogger(__name__)

TEST_SETS = ("clean", "independent", "flipped")
TEST_METRICS = ("accuracy", "recall", "specificity", "roc_auc")


@dataclass(frozen=True)
class BiasConfig:
    artifact: str = "border_band"
    count: int = 800  # train + validation phantoms
    test_count: int = 200  # per test set
    film_size: int = 128
    image_size: int = 64
    block_filters: tuple[int, ...] = (8, 16, 32)  # a 16 x 16 Grad-CAM grid at 64 px
    epochs: int = 15
    patience: int = 5
    seed: int = 0
    shortcut_epochs: int = 5  # "before" learns the band in one or two epochs
    audit_limit: int = 200
    deletion_limit: int = 48
    sanity_limit: int = 24
    ablation_probability: float | None = None  # also train the fix painting only some films


QUICK = BiasConfig(count=500, test_count=100, epochs=12, patience=4, audit_limit=100)


@dataclass(frozen=True)
class Variant:
    name: str
    trim_borders: bool
    paint_probability: float | None  # None: no artefact augmentation
    epochs: int
    description: str = ""


@dataclass
class BiasResult:
    summary: dict  # the content of bias.json
    audits: dict = field(
        default_factory=dict
    )  # variant name -> worker.audit.explanations.AuditResult
    test_dirs: dict[str, Path] = field(default_factory=dict)
    model_dirs: dict[str, Path] = field(default_factory=dict)
    panels: dict[str, list] = field(default_factory=dict)  # variant -> (image, map, caption)s


def variants(config: BiasConfig) -> list[Variant]:
    """The shortcut pipeline, the fix, and optionally the fix painting only some films."""
    chosen = [
        Variant("before", False, None, config.shortcut_epochs,
                "border trimming off, no artefact augmentation"),
        Variant("after", True, 1.0, config.epochs,
                "border trimming on + band and marker painted on every training film"),
    ]  # fmt: skip
    if config.ablation_probability is not None:
        probability = config.ablation_probability
        description = f"border trimming on + band and marker painted on {probability:.0%} of films"
        chosen.append(Variant(f"after_p{probability:g}", True, probability, config.epochs,
                              description))  # fmt: skip
    return chosen


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
        artifact_correlation=1.0,
        images_per_patient=(1, 2),
    )
    return out_dir


def train_variant(variant: Variant, data_dir: Path, model_dir: Path, config: BiasConfig) -> Path:
    params = PreprocessParams(image_size=config.image_size, trim_borders=variant.trim_borders)
    dataset = load_dataset(data_dir, params, splits=("train", "val"), seed=config.seed)
    if variant.paint_probability is not None:
        # Training films only: validation picks the epoch, the temperature and the threshold,
        # so it must look like what will be served, and served films are never painted.
        files = [item["file"] for item in dataset.manifest["files"]["train"]]
        dataset.splits["train"].images = augmented_images(
            data_dir, files, params, variant.paint_probability, config.seed
        )
    architecture = Architecture(config.image_size, config.block_filters, dense_units=32)
    training = TrainingConfig(
        epochs=variant.epochs,
        batch_size=16,
        patience=config.patience,
        seed=config.seed,
        architecture=architecture,
    )
    identity = ModelIdentity(name=f"bias-{variant.name}", version="0.0.1", synthetic=True)
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
    started = time.perf_counter()
    data_dir = write_training_data(work_dir / "phantoms", config)
    result = BiasResult({"config": asdict(config), "variants": {}})
    result.test_dirs = {
        name: write_test_set(work_dir / f"test-{name}", name, config) for name in TEST_SETS
    }
    log.info("Phantoms written in %.1f s", time.perf_counter() - started)
    for variant in variants(config):
        started = time.perf_counter()
        model_dir = train_variant(variant, data_dir, work_dir / "models" / variant.name, config)
        log.info("Trained %s in %.1f s", variant.name, time.perf_counter() - started)
        started = time.perf_counter()
        result.model_dirs[variant.name] = model_dir
        assess_variant(variant, model_dir, config, result, out_dir / variant.name)
        log.info("Scored and audited %s in %.1f s", variant.name, time.perf_counter() - started)
    (out_dir / "bias.json").write_text(json.dumps(result.summary, indent=1) + "\n")
    return result


def assess_variant(
    variant: Variant, model_dir: Path, config: BiasConfig, result: BiasResult, report_dir: Path
) -> None:
    """Test-set scores, the audit (report written to report_dir) and the flipped-set panels."""
    runtime = ModelRuntime.from_directory(model_dir)
    tests = {name: score_test_set(runtime, path) for name, path in result.test_dirs.items()}
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
    result.audits[variant.name] = audit
    result.panels[variant.name] = flipped_panels(runtime, result.test_dirs["flipped"])
    result.summary["variants"][variant.name] = {
        "description": variant.description,
        "test": tests,
        "audit": audit.summary["methods"],
        "audit_data": audit.summary["data"],
    }


def quick_config(**overrides) -> BiasConfig:
    return replace(QUICK, **overrides)
