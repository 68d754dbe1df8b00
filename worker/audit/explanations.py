"""The Grad-CAM audit: the maps users are served, scored against ground truth and the model.

Everything runs through `ModelRuntime.predict` on `load_radiograph` pixels, so the audited maps
are the served maps. Per method (worker.model.gradcam.METHOD_NAMES) it reports:

- pointing_game: share of true positives whose map peak lies in the lesion;
- lesion_energy: mean share of map mass in the lesion, over the same true positives;
- lung_energy, border_energy: mean share in the lung fields / the outer 10 % band, over all
  images (each map explains the class returned for its image);
- artifact_energy: mean share on the scanner artefact, over the images that carry one;
- deletion_auc: mean P(pneumonia) while the most relevant 0-50 % of pixels are removed, over
  images predicted PNEUMONIA; random_deletion_auc removes pixels in random order instead;
- randomization_similarity: Spearman correlation with the maps of the model whose head was
  re-initialised, the first stage of the cascade; every stage's Spearman and SSIM and the
  verdict over all of them are in "randomization" (worker.audit.randomisation).

Without masks only border energy, deletion and the randomisation check are computed; the rest
are null. `worker.audit.report` writes audit.json, report.md and the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worker.audit import randomisation as sanity
from worker.audit.cam_metrics import (
    DELETION_FRACTIONS,
    curve_area,
    deletion_images,
    energy_share,
    mean_or_none,
    pointing_hit,
    pointing_tolerance,
    random_order,
    relevance_order,
)
from worker.audit.data import (
    AuditData,
    load_audit_data,
    predict_and_upsample,
    served_probabilities,
)
from worker.model.artifact import load_artifact
from worker.model.gradcam import METHOD_NAMES
from worker.model.runtime import ModelRuntime
from worker.phantoms.artefacts import border_mask

BORDER_FRACTION = 0.1
DEFINITIONS = {
    "pointing_game": "true positives with a lesion mask (label and prediction PNEUMONIA); "
    "a hit is a peak within the standard tolerance (15 px at 224 px, scaled) of the lesion",
    "pointing_game_strict": "the same images; a hit is a peak pixel inside the lesion mask",
    "lesion_energy": "true positives with a lesion mask",
    "lung_energy": "all images with masks; each map explains its returned class",
    "border_energy": f"all images; outer {BORDER_FRACTION:.0%} band of the model input",
    "artifact_energy": "images carrying a scanner artefact (its drawn region)",
    "deletion_auc": "images predicted PNEUMONIA; P(pneumonia) averaged over 0-50 % removed",
    "randomization_similarity": "Spearman (absolute values) vs maps after the head is "
    "re-initialised, the cascade's first stage; every stage is in the randomisation table",
}


@dataclass
class Explained:
    probabilities: np.ndarray  # (N,) calibrated P(pneumonia), as served
    predicted: np.ndarray  # (N,) 1 = PNEUMONIA returned
    maps: dict[str, np.ndarray]  # method -> (N, S, S) in [0, 1], upsampled to the model input


@dataclass
class AuditResult:
    summary: dict  # the content of audit.json
    data: AuditData
    explained: Explained
    sanity_examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    sanity_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    deletion_curves: dict[str, list[float]] = field(default_factory=dict)


def explain(runtime: ModelRuntime, images: np.ndarray) -> Explained:
    predictions, maps = predict_and_upsample(runtime, images)
    probabilities = np.array([p.probability for p in predictions])
    predicted = np.array([int(p.label == "PNEUMONIA") for p in predictions])
    return Explained(probabilities, predicted, maps)


def mean_share(maps: np.ndarray, masks: np.ndarray, indices: np.ndarray) -> float | None:
    return mean_or_none(energy_share(maps[i], masks[i]) for i in indices)


def lesion_scores(maps: np.ndarray, lesions: np.ndarray, true_positives: np.ndarray) -> dict:
    """Pointing game (standard tolerance and strict) and lesion energy over true positives."""
    tolerance = pointing_tolerance(maps.shape[1])
    return {
        "pointing_game": mean_or_none(
            pointing_hit(maps[i], lesions[i], tolerance) for i in true_positives
        ),
        "pointing_game_strict": mean_or_none(
            pointing_hit(maps[i], lesions[i]) for i in true_positives
        ),
        "pointing_tolerance_px": tolerance,
        "pointing_game_images": int(true_positives.size),
        "lesion_energy": mean_share(maps, lesions, true_positives),
    }


def localisation_scores(maps: np.ndarray, data: AuditData, predicted: np.ndarray) -> dict:
    """Pointing game and energy shares of one method's maps (None where not computable)."""
    every = np.arange(len(maps))
    border = np.broadcast_to(border_mask(maps.shape[1], BORDER_FRACTION), maps.shape)
    scores = {"border_energy": mean_share(maps, border, every)}
    lungs, lesions, artefacts = data.lung_masks, data.lesion_masks, data.artifact_masks
    if lungs is None or lesions is None or artefacts is None:  # loaded together, or not at all
        missing = (
            "pointing_game",
            "pointing_game_strict",
            "lesion_energy",
            "lung_energy",
            "artifact_energy",
        )
        return scores | dict.fromkeys(missing, None) | {"pointing_game_images": 0}
    true_positives = np.flatnonzero(
        (data.labels == 1) & (predicted == 1) & lesions.any(axis=(1, 2))
    )
    with_artefact = np.flatnonzero(artefacts.any(axis=(1, 2)))
    return (
        scores
        | lesion_scores(maps, lesions, true_positives)
        | {
            "lung_energy": mean_share(maps, lungs, every),
            "artifact_energy": mean_share(maps, artefacts, with_artefact),
        }
    )


def deletion_scores(
    runtime: ModelRuntime, images: np.ndarray, maps: dict[str, np.ndarray], seed: int
) -> dict[str, list[float]]:
    """order name -> mean P(pneumonia) curve over DELETION_FRACTIONS, for each method's order
    and for a random order; images is the (already chosen) set predicted PNEUMONIA."""
    if len(images) == 0:
        return {}
    rng = np.random.default_rng(seed)
    orders = [*maps, "random"]
    batches = []
    for index, image in enumerate(images):
        for order_name in orders:
            order = (
                random_order(image.size, rng)
                if order_name == "random"
                else relevance_order(maps[order_name][index], rng)
            )
            batches.append(deletion_images(image, order, rng))
    probabilities = served_probabilities(runtime, np.concatenate(batches))
    curves = probabilities.reshape(len(images), len(orders), len(DELETION_FRACTIONS)).mean(axis=0)
    return {name: curve.tolist() for name, curve in zip(orders, curves, strict=True)}


def subset(count: int, limit: int, seed: int) -> np.ndarray:
    """Up to `limit` of `count` indices, sorted, the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(count)[: min(count, limit)])


def audit_model(
    model_dir: Path,
    data_dir: Path,
    *,
    split: str = "test",
    limit: int | None = 300,
    deletion_limit: int = 48,
    sanity_limit: int = 24,
    seed: int = 0,
) -> AuditResult:
    runtime = ModelRuntime.from_directory(model_dir)
    data = load_audit_data(
        data_dir, runtime.card.preprocessing, split=split, limit=limit, seed=seed
    )
    explained = explain(runtime, data.images)
    flagged = np.flatnonzero(explained.predicted == 1)
    chosen = flagged[subset(len(flagged), deletion_limit, seed)]
    curves = deletion_scores(
        runtime, data.images[chosen], {m: explained.maps[m][chosen] for m in METHOD_NAMES}, seed
    )
    sanity_indices = subset(len(data.labels), sanity_limit, seed)
    randomisation = sanity.cascading_randomisation(
        lambda: load_artifact(model_dir)[0], runtime.card, data.images[sanity_indices], seed
    )
    summary = summarise(runtime, data, explained, curves, randomisation, len(chosen))
    summary["data"] |= {"path": str(data_dir), "split": split}
    return AuditResult(
        summary, data, explained, randomisation.pop("examples"), sanity_indices, curves
    )


def summarise(runtime, data, explained, curves, randomisation, deletion_images_count) -> dict:
    """audit.json: per method the issue's five keys plus the supporting numbers."""
    methods = {}
    for method in METHOD_NAMES:
        scores = localisation_scores(explained.maps[method], data, explained.predicted)
        verdict = randomisation["verdict"][method]
        scores |= {
            "randomization_similarity": verdict["spearman"],
            "randomization_ssim": verdict["ssim"],
            "sanity_check_passed": verdict["passed"],
            "sanity_check_first_failed_stage": verdict["first_failed_stage"],
            "deletion_auc": curve_area(DELETION_FRACTIONS, curves[method]) if curves else None,
        }
        methods[method] = scores
    return {
        "format": "pneumo-gradcam-audit/1",
        "model": runtime.card.info().model_dump(),
        "layer": runtime.card.last_conv_layer,
        "target": "logit of the returned class (+logit PNEUMONIA, -logit NORMAL)",
        "data": data_summary(data, explained),
        "methods": methods,
        "random_deletion_auc": (
            curve_area(DELETION_FRACTIONS, curves["random"]) if curves else None
        ),
        "deletion": {
            "fractions": list(DELETION_FRACTIONS),
            "images": deletion_images_count,
            "curves": curves,
        },
        "randomization": {
            "limit": sanity.SIMILARITY_LIMIT,
            "rule": sanity.VERDICT_RULE,
            "stages": randomisation["stages"],
        },
        "definitions": DEFINITIONS,
    }


def data_summary(data: AuditData, explained: Explained) -> dict:
    labels, predicted = data.labels, explained.predicted
    summary = {
        "images": int(len(labels)),
        "pneumonia": int(labels.sum()),
        "masks": data.has_masks,
        "accuracy": float(np.mean(labels == predicted)),
        "true_positives": int(np.sum((labels == 1) & (predicted == 1))),
        "predicted_pneumonia": int(predicted.sum()),
    }
    if data.artifact_masks is not None:
        summary["with_artifact"] = int(data.artifact_masks.any(axis=(1, 2)).sum())
    return summary
