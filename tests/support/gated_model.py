"""A tiny artifact WITH an out-of-distribution gate, fitted in about a second: for the tests of
the flagged answer where people see it (the page, `pneumo`, `/predict`, `/metrics`).

The gate is fitted as `pneumo train` fits one (`worker.training.ood_fitting`: statistics from
training films, threshold on validation at <= 5 % false flags), on phantom films put through the
one preprocessing function, but onto an untrained trunk: its random filters already tell a
phantom from a noise field by tens of Mahalanobis units, so no training is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tests.support.images import encode, phantom
from worker.phantoms.radiograph import Phantom

IMAGE_SIZE = 64
FILM_SIDE = 256
TRAIN_SEEDS = range(1000, 1060)
VALIDATION_SEEDS = range(2000, 2040)
METHOD = "mahalanobis"


@dataclass(frozen=True)
class GatedModel:
    directory: Path
    threshold: float
    typical_film: bytes  # a held-out phantom PNG scoring the validation median: in distribution
    noise_field: bytes  # a PNG of uniform noise: nothing like a radiograph


def film(seed: int) -> Phantom:
    return phantom(seed, pneumonia=seed % 2 == 1, size=FILM_SIDE)


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    return encode(Image.fromarray(pixels), "PNG")


def build_gated_model(directory: Path, seed: int = 0) -> GatedModel:
    import keras

    from shared.imaging import PreprocessParams, preprocess
    from shared.model_card import ModelCard, OodChoice
    from worker.model.architecture import Architecture, build_classifier
    from worker.model.artifact import save_artifact
    from worker.model.ood import choose_threshold, fit_statistics, flag_rate
    from worker.training.ood_fitting import pooled_features

    keras.utils.set_random_seed(seed)
    arch = Architecture(image_size=IMAGE_SIZE, block_filters=(8, 16, 32, 64), dense_units=16)
    model, params = build_classifier(arch), PreprocessParams(image_size=IMAGE_SIZE)
    seeds = [*TRAIN_SEEDS, *VALIDATION_SEEDS]
    pooled = pooled_features(model, np.stack([preprocess(film(s).image, params) for s in seeds]))
    train_pooled, validation_pooled = pooled[: len(TRAIN_SEEDS)], pooled[len(TRAIN_SEEDS) :]
    statistics = fit_statistics(train_pooled, np.array([film(s).label for s in TRAIN_SEEDS]))
    validation_scores = statistics.scores(validation_pooled, METHOD)
    threshold = choose_threshold(validation_scores)
    gate = OodChoice(
        method=METHOD, threshold=threshold, rule="tests: validation <= 5 % flagged",
        validation_false_flag_rate=flag_rate(validation_scores, threshold),
    )  # fmt: skip
    card = ModelCard(
        name="gated-test-model", version="0.0.1", synthetic=True, preprocessing=params,
        architecture=asdict(arch), ood=gate,
    )  # fmt: skip
    save_artifact(model, card, directory, statistics)
    median_seed = VALIDATION_SEEDS[int(np.argsort(validation_scores)[len(validation_scores) // 2])]
    noise = np.random.default_rng(seed).integers(0, 256, (FILM_SIDE, FILM_SIDE), dtype=np.uint8)
    return GatedModel(directory, threshold, png(film(median_seed).image), png(noise))
