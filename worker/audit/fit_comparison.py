"""Squash or letterbox? The same small model trained both ways on phantoms of varied aspect
ratio, same seeds, scored by AUC and the pointing game on held-out films.

Real films are not square (Kermany's run 968-2,000 px wide at many proportions). Squashing them
to the square input distorts the anatomy by a different amount on every film; letterboxing keeps
proportions but spends part of the input on padding. Run:

    python -m worker.audit.fit_comparison [--train 600] [--epochs 8] [--seed 0]

It prints one line per fit (the numbers behind the choice recorded in the model card).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from shared.imaging import PreprocessParams, preprocess
from shared.overlay import upsample_map
from worker.audit.cam_metrics import pointing_hit, pointing_tolerance
from worker.audit.mask_geometry import preprocess_box, transform_mask
from worker.phantoms.radiograph import generate_phantom

FILM_SIDE = 192  # the long side of each phantom film, before preprocessing
ASPECT_RANGE = (0.6, 1.6)  # rows / columns, log-uniform: portrait and landscape films


@dataclass
class Films:
    films: list[np.ndarray]
    lesions: list[np.ndarray]
    labels: np.ndarray


def non_square_films(count: int, seed: int) -> Films:
    """Balanced phantoms cropped to a random aspect ratio: the anatomy keeps its proportions,
    the field of view changes, as between real films."""
    rng = np.random.default_rng(seed)
    films, lesions, labels = [], [], []
    for index in range(count):
        phantom = generate_phantom(rng, FILM_SIDE, pneumonia=index % 2 == 1)
        aspect = float(np.exp(rng.uniform(*np.log(ASPECT_RANGE))))
        rows = FILM_SIDE if aspect >= 1 else round(FILM_SIDE * aspect)
        columns = FILM_SIDE if aspect < 1 else round(FILM_SIDE / aspect)
        top = int(rng.integers(0, FILM_SIDE - rows + 1))
        left = int(rng.integers(0, FILM_SIDE - columns + 1))
        crop = (slice(top, top + rows), slice(left, left + columns))
        films.append(phantom.image[crop])
        lesions.append(phantom.lesion_mask[crop])
        labels.append(float(phantom.label and phantom.lesion_mask[crop].any()))
    return Films(films, lesions, np.array(labels, dtype=np.float32))


def model_inputs(films: Films, params: PreprocessParams) -> tuple[np.ndarray, np.ndarray]:
    """The films and their lesion masks through the one preprocessing function."""
    images = np.stack([preprocess(film, params) for film in films.films])
    masks = np.stack(
        [
            transform_mask(lesion, film.shape, preprocess_box(film, params), params)
            for film, lesion in zip(films.films, films.lesions, strict=True)
        ]
    )
    return images, masks


def train(images, labels, validation, epochs: int, seed: int):
    import keras

    from worker.model.architecture import Architecture, build_classifier

    keras.utils.set_random_seed(seed)
    arch = Architecture(image_size=images.shape[1], block_filters=(16, 32, 64), dense_units=32)
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
        images[..., None], labels, epochs=epochs, batch_size=32, verbose=0,
        validation_data=(validation[0][..., None], validation[1]), callbacks=[best],
    )  # fmt: skip
    return model


def score(model, params: PreprocessParams, images, masks, labels) -> dict[str, float]:
    from shared.model_card import ModelCard
    from worker.model.runtime import ModelRuntime
    from worker.training.classification_metrics import roc_auc

    card = ModelCard(name="fit-comparison", version="0", synthetic=True, preprocessing=params)
    predictions = ModelRuntime(model, card).predict(images)
    probabilities = np.array([p.probability for p in predictions])
    size = images.shape[1]
    hits = [
        pointing_hit(upsample_map(p.maps["gradcam"], size), mask, pointing_tolerance(size))
        for p, mask, label in zip(predictions, masks, labels, strict=True)
        if label == 1 and p.label == "PNEUMONIA"
    ]
    return {
        "auc": round(roc_auc(labels, probabilities), 4),
        "pointing_game": round(float(np.mean(hits)), 4) if hits else float("nan"),
        "true_positives_pointed": len(hits),
    }


def compare(train_count: int, epochs: int, seed: int, image_size: int = 128) -> dict[str, dict]:
    sets = {
        "train": non_square_films(train_count, seed),
        "validation": non_square_films(max(100, train_count // 5), seed + 1),
        "test": non_square_films(max(200, train_count // 3), seed + 2),
    }
    results = {}
    for fit in ("squash", "letterbox"):
        params = PreprocessParams(image_size=image_size, fit=fit)
        prepared = {name: model_inputs(films, params) for name, films in sets.items()}
        validation = (prepared["validation"][0], sets["validation"].labels)
        model = train(prepared["train"][0], sets["train"].labels, validation, epochs, seed)
        results[fit] = score(model, params, *prepared["test"], sets["test"].labels)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=600, help="Training films (balanced).")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="Data and weight seeds, both fits.")
    arguments = parser.parse_args()
    low, high = ASPECT_RANGE
    print(f"phantom films {low}-{high} rows/columns, 128 px input, {arguments.train} training "
          f"films, {arguments.epochs} epochs, seed {arguments.seed}")  # fmt: skip
    for fit, numbers in compare(arguments.train, arguments.epochs, arguments.seed).items():
        print(fit, numbers)


if __name__ == "__main__":
    main()
