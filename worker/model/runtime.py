"""The model runtime: one loaded artifact per process, one compiled predict-and-explain call."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from shared.model_card import ModelCard
from worker.model.architecture import split_classifier
from worker.model.artifact import load_artifact, load_ood_gate
from worker.model.gradcam import METHOD_NAMES
from worker.model.gradients import make_explainer
from worker.model.ood import OodGate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OodAssessment:
    score: float  # higher = less like the training data
    threshold: float
    flagged: bool  # score > threshold: the answer is not to be relied on


@dataclass(frozen=True)
class Prediction:
    probability: float  # calibrated P(pneumonia)
    label: str
    maps: dict[str, np.ndarray]  # method -> (h, w) float32 in [0, 1], explaining `label`
    logit: float  # the model's own logit, before calibration (reports compare the two)
    ood: OodAssessment | None = None  # None: the artifact has no OOD gate (made before it)

    @property
    def confidence(self) -> float:
        return self.probability if self.label == "PNEUMONIA" else 1.0 - self.probability


def rebuild_in_bfloat16(model, card: ModelCard):
    """The saved model pins float32 per layer, so build the architecture again under the
    mixed policy (bfloat16 compute, float32 weights and logit) and copy the weights over."""
    import keras

    from worker.model.architecture import Architecture, build_classifier

    fields = {key: value for key, value in card.architecture.items() if key != "family"}
    fields["block_filters"] = tuple(fields.get("block_filters", Architecture.block_filters))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        rebuilt = build_classifier(Architecture(**fields))
    finally:
        keras.config.set_dtype_policy(previous)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def bucket_size(count: int, largest: int) -> int:
    """Pad batches to powers of two so a shape-specialising backend (JAX) compiles few shapes."""
    return min(largest, 1 << max(0, math.ceil(math.log2(max(count, 1)))))


class ModelRuntime:
    """Owns the model for its process. Build it after any fork, never at import time."""

    def __init__(self, model, card: ModelCard, threshold: float | None = None, max_batch: int = 64,
                 mixed_precision: bool = False, jit_compile: bool = False,
                 ood: OodGate | None = None):  # fmt: skip
        self.card = card
        self.ood = ood
        self.threshold = threshold if threshold is not None else card.threshold.value
        self.max_batch = max_batch
        if mixed_precision:
            model = rebuild_in_bfloat16(model, card)
        features, head = split_classifier(model)
        # One entry per trace of the explainer: the batch size where the backend traces and
        # compiles per shape (JAX), None for TensorFlow's one graph for any batch size (XLA,
        # when on, compiles that graph per shape without tracing it again).
        self.traced_batch_sizes: list[int | None] = []
        self._explain = make_explainer(
            features, head, jit_compile, on_trace=self.traced_batch_sizes.append
        )
        # JAX and XLA compile one program per batch shape, so batches are padded to a few
        # sizes; TensorFlow's graph takes any batch size, and padding would only burn time
        # (a batch of 9 padded to 16 costs as much as 16).
        self._pads_batches = jit_compile or keras.backend.backend() != "tensorflow"
        self.image_size = card.preprocessing.image_size
        # With two batches in flight (`PNEUMO_BATCHES_IN_FLIGHT`), one reads and writes Redis
        # while the other holds the model: one call at a time keeps each at full speed.
        self._model_lock = threading.Lock()

    @classmethod
    def from_directory(cls, directory: Path, threshold: float | None = None, max_batch: int = 64,
                       mixed_precision: bool = False, jit_compile: bool = False):  # fmt: skip
        model, card = load_artifact(directory)
        ood = load_ood_gate(directory, card)
        log.info("Loaded model %s %s (sha256 %s)", card.name, card.version, card.sha256[:12])
        if ood is None:
            log.warning("Model %s has no OOD statistics: results say not_assessed.", card.name)
        return cls(model, card, threshold, max_batch, mixed_precision, jit_compile, ood)

    @property
    def logit_threshold(self) -> float:
        """The raw-logit cut that matches `threshold` after the card's calibration."""
        return self.card.calibration.raw_logit(math.log(self.threshold / (1.0 - self.threshold)))

    def warm_up(self) -> float:
        """Compile every batch shape the worker will use, so no request pays for tracing."""
        started = time.perf_counter()
        size = 1
        while size <= self.max_batch:
            self.predict(np.zeros((size, self.image_size, self.image_size), np.uint8))
            size *= 2
        return time.perf_counter() - started

    def predict(self, images: np.ndarray) -> list[Prediction]:
        """images (B, S, S) uint8 -> one Prediction each, in chunks of at most max_batch."""
        predictions: list[Prediction] = []
        with self._model_lock:
            for start in range(0, len(images), self.max_batch):
                predictions.extend(self._predict_chunk(images[start : start + self.max_batch]))
        return predictions

    def _predict_chunk(self, images: np.ndarray) -> list[Prediction]:
        count = len(images)
        padded = images
        if self._pads_batches:
            padded = np.zeros((bucket_size(count, self.max_batch), *images.shape[1:]), np.uint8)
            padded[:count] = images
        logits, maps, pooled = self._explain(padded[..., None], self.logit_threshold)
        raw_logits = logits[:count].astype(np.float64)
        calibration = self.card.calibration
        scaled = calibration.slope * raw_logits + calibration.intercept
        probabilities = np.exp(-np.logaddexp(0.0, -scaled))  # sigmoid without overflow
        assessments = self._assess(pooled[:count])
        return [
            Prediction(
                probability=float(probability),
                label="PNEUMONIA" if probability >= self.threshold else "NORMAL",
                maps=dict(zip(METHOD_NAMES, image_maps, strict=True)),
                logit=float(logit),
                ood=assessment,
            )
            for probability, logit, image_maps, assessment in zip(
                probabilities, raw_logits, maps[:count], assessments, strict=True
            )
        ]

    def _assess(self, pooled: np.ndarray) -> list[OodAssessment | None]:
        """The OOD score from the pooled features the same call returned: no second pass."""
        if self.ood is None:
            return [None] * len(pooled)
        scores, flagged = self.ood.assess(pooled)
        return [
            OodAssessment(float(score), self.ood.threshold, bool(flag))
            for score, flag in zip(scores, flagged, strict=True)
        ]
