"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that survives the destruction of what the model learned explains the image, not
the model. Cascading randomisation re-initialises the weights from the top: first the head (the
dense layers), then the last conv block, then each block below it, always on a fresh copy of
the artifact's model, and after each stage asks the serving runtime for the maps again. A
faithful method's maps must change: low Spearman rank correlation (of absolute values, as
Adebayo et al. rank them) and SSIM with the originals.

The verdict rule, applied from the first stage: a method passes only if its mean Spearman and
its mean SSIM are both <= 0.5 at every stage, the head-only stage included. Judging only a
later stage would pass a method whose maps survive the loss of the head, the part of the
model that decides the class.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from shared.model_card import ModelCard
from worker.audit.cam_metrics import mean_or_none, rank_correlation, structural_similarity
from worker.audit.data import predict_and_upsample
from worker.model.architecture import split_classifier
from worker.model.gradcam import METHOD_NAMES
from worker.model.runtime import ModelRuntime

SIMILARITY_LIMIT = 0.5
VERDICT_RULE = (
    f"passes only if mean Spearman (absolute values) and mean SSIM are both <= "
    f"{SIMILARITY_LIMIT} at every stage of the cascade, from the first (head only)"
)
BLOCK_INDEX = re.compile(r"(\d+)[a-z]?$")  # conv2b, bn2a -> block 2


@dataclass(frozen=True)
class Stage:
    name: str
    layers: tuple[keras.layers.Layer, ...]  # randomised at this stage, on top of earlier stages


def cascade_stages(model: keras.Model) -> list[Stage]:
    """Head first, then the trunk's conv blocks from the last to the first."""
    features, head = split_classifier(model)
    stages = [Stage("head", tuple(layer for layer in reversed(head.layers) if layer.weights))]
    blocks: dict[str, list[keras.layers.Layer]] = defaultdict(list)
    for layer in reversed(features.layers):
        if layer.weights:
            match = BLOCK_INDEX.search(layer.name)
            blocks[match.group(1) if match else layer.name].append(layer)
    stages += [Stage(f"+ conv block {block}", tuple(layers)) for block, layers in blocks.items()]
    return stages


def reinitialise(layer: keras.layers.Layer, seed: int) -> None:
    """Fresh values from the layer's own initialisers (kernel, bias, gamma, moving_mean, ...)."""
    for offset, variable in enumerate(layer.weights):
        initializer = getattr(layer, f"{variable.name}_initializer")
        config = initializer.get_config()
        if "seed" in config:  # a seeded copy, so the randomised model is reproducible
            config["seed"] = seed + offset
        fresh = type(initializer).from_config(config)
        variable.assign(fresh(variable.shape, variable.dtype))


def served_maps(runtime: ModelRuntime, images: np.ndarray) -> dict[str, np.ndarray]:
    return predict_and_upsample(runtime, images)[1]


def map_similarity(original: np.ndarray, randomised: np.ndarray) -> dict[str, float | None]:
    """Mean Spearman and SSIM over images; an image whose maps cannot be ranked is skipped."""
    pairs = list(zip(np.abs(original), np.abs(randomised), strict=True))
    return {
        "spearman": mean_or_none(rank_correlation(first, second) for first, second in pairs),
        "ssim": mean_or_none(structural_similarity(first, second) for first, second in pairs),
    }


def cascading_randomisation(
    model_loader: Callable[[], keras.Model], card: ModelCard, images: np.ndarray, seed: int = 0
) -> dict:
    """Per stage and method: similarity of randomised to original maps; plus the verdict.

    `model_loader()` returns a fresh copy of the model (e.g. from the artifact directory); it is
    randomised in place, stage by stage, cumulatively.
    """
    model = model_loader()
    reference = served_maps(ModelRuntime(model, card), images)
    stages, results, examples = cascade_stages(model), [], {"original": reference}
    for index, stage in enumerate(stages):
        for layer_index, layer in enumerate(stage.layers):
            reinitialise(layer, seed + 1000 * index + 100 * layer_index)
        maps = served_maps(ModelRuntime(model, card), images)
        examples[stage.name] = maps
        per_method = {m: map_similarity(reference[m], maps[m]) for m in METHOD_NAMES}
        layers = [layer.name for layer in stage.layers]
        results.append({"stage": stage.name, "layers": layers, "methods": per_method})
    return {"stages": results, "verdict": verdict(results), "examples": examples}


def verdict(results: list[dict]) -> dict[str, dict]:
    """Per method: pass or fail by VERDICT_RULE, the first stage that failed, and the first
    stage's numbers (the one judged first, and the hardest to pass)."""
    verdicts = {}
    for method in METHOD_NAMES:
        failed = [stage["stage"] for stage in results if not _dissimilar(stage["methods"][method])]
        first = results[0]["methods"][method]
        verdicts[method] = {
            "stage": results[0]["stage"],
            "spearman": first["spearman"],
            "ssim": first["ssim"],
            "first_failed_stage": failed[0] if failed else None,
            "failed_stages": failed,
            "passed": not failed,
        }
    return verdicts


def _dissimilar(similarity: dict[str, float | None]) -> bool:
    """Below the limit on both measures; a stage whose maps could not be ranked at all (every
    map constant) shows nothing and does not pass."""
    values = [value for value in similarity.values() if value is not None]
    return bool(values) and max(values) <= SIMILARITY_LIMIT
