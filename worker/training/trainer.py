"""Train the CNN from scratch, calibrate it and choose its operating point on validation.

Augmentation runs in the tf.data pipeline, never inside the saved model, so serving stays
deterministic. After training: Platt scaling (slope and intercept, guarded against separable
data: `worker.training.calibration`) fitted on the validation logits, then the decision threshold
chosen on validation for a target sensitivity on the calibrated scale; both go into model.json,
which is what `ModelRuntime` serves with.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers

from shared.imaging import PreprocessParams
from shared.model_card import ModelCard, ThresholdChoice
from worker.model.architecture import LAST_CONV_LAYER, Architecture, build_classifier
from worker.model.artifact import save_artifact
from worker.training import classification_metrics as metrics
from worker.training.calibration import calibrate, calibrated_logits
from worker.training.datasets import Dataset, class_weights, write_manifest
from worker.training.fit_choice import CHOSEN_FIT, Fit, preprocessing_choice
from worker.training.ood_fitting import fit_ood_gate
from worker.training.reports import default_limitations, write_model_card_markdown

HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
ROTATION_DEGREES = 7.0
LOGIT_LIMIT = 15.0  # keeps the threshold strictly inside (0, 1) as a probability
# Keras' default 0.99 leaves BatchNorm's moving statistics near their initial values for the first
# few hundred steps, and a small data set has only tens of steps per epoch: validation (which
# uses the moving statistics) then sees a constant model for epochs. 0.9 tracks within ~20 steps.
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 4
    seed: int = 0
    target_sensitivity: float = 0.95
    augment: bool = True
    architecture: Architecture = field(default_factory=Architecture)


@dataclass(frozen=True)
class ModelIdentity:
    name: str = "pneumo-cnn"
    version: str = "0.1.0"
    synthetic: bool = False


def training_preprocessing(image_size: int, fit: Fit = CHOSEN_FIT) -> PreprocessParams:
    """What `pneumo train` and `train-demo` preprocess with: the measured fit (letterbox) unless
    asked otherwise; PreprocessParams' own default stays squash for cards made before it."""
    return PreprocessParams(image_size=image_size, fit=fit)


def make_augmenter(seed: int) -> keras.Sequential:
    """Changes a real film could show: a slightly tilted, shifted or magnified patient and a
    different exposure. No horizontal flip: on a PA film the heart sits to the image right, and
    a mirrored chest (dextrocardia) is an anatomy the model should not be taught is normal; it
    would also blur which lung Grad-CAM points at."""
    fill = {"fill_mode": "nearest"}  # reflected anatomy at the edge would be a new artefact
    return keras.Sequential(
        [
            layers.RandomRotation(ROTATION_DEGREES / 360.0, seed=seed, **fill),
            layers.RandomTranslation(0.05, 0.05, seed=seed + 1, **fill),
            layers.RandomZoom((-0.1, 0.1), seed=seed + 2, **fill),
            layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 3),
            layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 4),
        ],
        name="augment",
    )


def training_pipeline(images: np.ndarray, labels: np.ndarray, config: TrainingConfig):
    """Shuffled, batched, augmented tf.data stream of (image (S, S, 1) float 0..255, label)."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype("float32")))
    dataset = dataset.shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if config.augment:
        augmenter = make_augmenter(config.seed)

        def augment(batch, batch_labels):
            batch = augmenter(tf.cast(batch, tf.float32), training=True)
            # Back onto the uint8 grid the served images live on.
            return tf.round(tf.clip_by_value(batch, 0.0, 255.0)), batch_labels

        # Sequential map: parallel calls would draw from the layers' random state in a
        # scheduling-dependent order and break reproducibility; prefetch still overlaps it.
        dataset = dataset.map(augment)
    return dataset.prefetch(tf.data.AUTOTUNE)


def compile_classifier(model: keras.Model, config: TrainingConfig, steps_per_epoch: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.AUC(from_logits=True, name="auc")],
    )


def training_callbacks(out_dir: Path, config: TrainingConfig, extra: list) -> list:
    checkpoint = out_dir / ".checkpoint" / "best.keras"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=config.patience, restore_best_weights=True
        ),
        # Survives a crash mid-run; the final artifact is written from the restored best weights.
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_auc", mode="max", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(out_dir / HISTORY_CSV)),
        *extra,
    ]


def fit_classifier(dataset: Dataset, out_dir: Path, config: TrainingConfig, extra_callbacks=()):
    """Build and fit; returns the model holding the best-validation-AUC weights, and history."""
    keras.utils.set_random_seed(config.seed)
    train, validation = dataset.splits["train"], dataset.splits["val"]
    model = build_classifier(config.architecture)
    for layer in model.get_layer("features").layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    steps = math.ceil(len(train.labels) / config.batch_size)
    compile_classifier(model, config, steps)
    history = model.fit(
        training_pipeline(train.images, train.labels, config),
        validation_data=(validation.images[..., None], validation.labels.astype("float32")),
        epochs=config.epochs,
        class_weight=class_weights(train.labels),
        callbacks=training_callbacks(out_dir, config, list(extra_callbacks)),
        shuffle=False,  # the pipeline shuffles, seeded
        verbose=0,
    )
    return model, history.history


def predict_logits(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images[..., None], batch_size=64, verbose=0))[:, 0]


def choose_threshold(labels: np.ndarray, scaled_logits: np.ndarray, target: float):
    """The operating point on validation; the cut is placed in logit space, where the scores
    are spread out, and stored as the equivalent probability."""
    cut = metrics.sensitivity_threshold(labels, scaled_logits, target)
    value = float(metrics.sigmoid(np.clip(cut, -LOGIT_LIMIT, LOGIT_LIMIT)))
    achieved = metrics.threshold_metrics(labels, metrics.sigmoid(scaled_logits), value)
    return ThresholdChoice(
        value=value,
        rule=(
            f"validation sensitivity >= {target:g} with the best specificity, then the best "
            "sensitivity; cut midway between neighbouring validation scores (logit space)"
        ),
        target_sensitivity=target,
        validation_sensitivity=achieved["recall"],
        validation_specificity=achieved["specificity"],
    )


def validation_summary(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    summary = metrics.threshold_metrics(labels, probabilities, threshold)
    summary.update(
        roc_auc=metrics.roc_auc(labels, probabilities),
        pr_auc=metrics.average_precision(labels, probabilities),
        ece=metrics.expected_calibration_error(labels, probabilities),
        images=int(len(labels)),
    )
    return summary


def write_history(history: dict, out_dir: Path) -> dict:
    """history.json: one list per logged quantity, plus the epoch whose weights were kept."""
    clean = {key: [float(value) for value in values] for key, values in history.items()}
    best_epoch = int(np.argmax(clean["val_auc"])) + 1 if clean.get("val_auc") else None
    record = {"epochs": len(next(iter(clean.values()), [])), "best_epoch": best_epoch, **clean}
    (out_dir / HISTORY_JSON).write_text(json.dumps(record, indent=1) + "\n")
    return record


def train_model(
    dataset: Dataset,
    params: PreprocessParams,
    out_dir: Path,
    config: TrainingConfig,
    identity: ModelIdentity,
    extra_callbacks=(),
) -> ModelCard:
    """Fit, calibrate, choose the threshold and write the whole artifact directory."""
    if config.architecture.image_size != params.image_size:
        raise ValueError("The architecture's image_size must equal the preprocessing's.")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, history = fit_classifier(dataset, out_dir, config, extra_callbacks)
    seconds = time.perf_counter() - started
    validation = dataset.splits["val"]
    logits = predict_logits(model, validation.images)
    calibration, calibration_report = calibrate(validation.labels, logits)
    scaled = calibrated_logits(calibration, logits)
    threshold = choose_threshold(validation.labels, scaled, config.target_sensitivity)
    probabilities = metrics.sigmoid(scaled)
    ood_statistics, ood_choice = fit_ood_gate(model, dataset, params, config.seed)
    card = ModelCard(
        name=identity.name,
        version=identity.version,
        synthetic=identity.synthetic,
        limitations=default_limitations(identity.synthetic, dataset.manifest["source"]["kind"]),
        architecture={"family": "cnn-from-scratch", **asdict(config.architecture)},
        preprocessing=params,
        preprocessing_choice=preprocessing_choice(params.fit),
        last_conv_layer=LAST_CONV_LAYER,
        threshold=threshold,
        calibration=calibration,
        ood=ood_choice,
        metrics={
            "validation": validation_summary(validation.labels, probabilities, threshold.value),
            "calibration": calibration_report,
        },
        training=training_record(config, write_history(history, out_dir), seconds, dataset),
        data=data_record(dataset, write_manifest(dataset.manifest, out_dir)),
    )
    card = save_artifact(inference_copy(model, config.architecture), card, out_dir, ood_statistics)
    write_model_card_markdown(card, out_dir)
    shutil.rmtree(out_dir / ".checkpoint", ignore_errors=True)
    return card


def inference_copy(model: keras.Model, architecture: Architecture) -> keras.Model:
    """The trained weights in a fresh, uncompiled classifier: the artifact carries no optimizer
    state (two thirds of a compiled file) and the BatchNorm settings build_classifier gives."""
    fresh = build_classifier(architecture)
    fresh.set_weights(model.get_weights())
    return fresh


def data_record(dataset: Dataset, manifest_path: Path) -> dict:
    return {
        "source": dataset.manifest["source"],
        "fingerprint": dataset.fingerprint,
        "split_manifest": manifest_path.name,
        "split_rule": dataset.manifest.get("rule"),
        "counts": dataset.manifest.get("counts"),
    }


def training_record(config: TrainingConfig, history: dict, seconds: float, dataset: Dataset):
    settings = {key: value for key, value in asdict(config).items() if key != "architecture"}
    return {
        **settings,
        "loss": "binary cross-entropy on the logit, inverse-frequency class weights",
        "optimizer": "Adam, cosine-decayed learning rate",
        "augmentation": "rotation, shift, zoom, brightness, contrast; no horizontal flip"
        if config.augment
        else "none",
        "selection": "early stopping and checkpoint on validation ROC-AUC (best weights kept)",
        "epochs_run": history["epochs"],
        "best_epoch": history["best_epoch"],
        "train_images": len(dataset.splits["train"].labels),
        "seconds": round(seconds, 1),
        "history": HISTORY_JSON,
    }
