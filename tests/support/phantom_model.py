"""A small CNN trained on phantoms in seconds: the fixture behind Grad-CAM's known answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.phantoms.radiograph import Phantom, generate_phantom

IMAGE_SIZE = 64


@dataclass
class PhantomSet:
    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) 0/1
    lesion_masks: np.ndarray  # (N, S, S) bool
    lung_masks: np.ndarray


def phantom_set(count: int, seed: int, size: int = IMAGE_SIZE, artifact: str | None = None,
                artifact_on_label: int | None = None) -> PhantomSet:  # fmt: skip
    """Balanced phantoms; with `artifact_on_label`, only that class carries the artefact."""
    rng = np.random.default_rng(seed)
    phantoms: list[Phantom] = []
    for index in range(count):
        pneumonia = index % 2 == 1
        drawn = (
            artifact if artifact_on_label is None or artifact_on_label == int(pneumonia) else None
        )
        phantoms.append(generate_phantom(rng, size, pneumonia=pneumonia, artifact=drawn))
    return PhantomSet(
        images=np.stack([p.image for p in phantoms]),
        labels=np.array([p.label for p in phantoms], dtype=np.float32),
        lesion_masks=np.stack([p.lesion_mask for p in phantoms]),
        lung_masks=np.stack([p.lung_mask for p in phantoms]),
    )


def train_small_classifier(
    train: PhantomSet, validation: PhantomSet, epochs: int = 12, seed: int = 0
):
    """Three conv blocks -> a 16x16 Grad-CAM grid at 64 px; Adam + BCE on the logit; the
    weights with the best validation AUC are kept. Deterministic ops, so the test is stable."""
    import keras
    import tensorflow as tf

    from worker.model.architecture import Architecture, build_classifier

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    arch = Architecture(image_size=train.images.shape[1], block_filters=(8, 16, 32), dense_units=32)
    model = build_classifier(arch)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.AUC(from_logits=True, name="auc")],
    )
    best = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=3, restore_best_weights=True
    )
    model.fit(
        train.images[..., None], train.labels, epochs=epochs, batch_size=16, verbose=0,
        validation_data=(validation.images[..., None], validation.labels), callbacks=[best],
    )  # fmt: skip
    return model
