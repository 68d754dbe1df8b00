"""The bias experiment's remedy: random erasing of the film's border, blind to what is there.

A shortcut lives wherever an artefact's presence differs between the classes. This remedy does
not know where the generator draws its artefacts, nor which artefacts exist: it only assumes
what is true of chest films in general, that the diagnosis is not written in the outer frame.
Every training film of both classes, blind to its label, gets each of its four sides
overwritten by a strip of random width (ERASED_WIDTH, a fraction of that side) filled with
film-like noise at a random grey level. What lies in the frame then carries no label
information in training, and the model has to learn from what lies inside it.

Whatever sits further in (a text label over the apices, a device over the lungs) is not
covered, or only sometimes: the bias experiment measures that on a text marker too.
Validation and serving are untouched: they choose the epoch, the temperature and the
threshold, so they must look like what will be served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.imaging import IntakeLimits, PreprocessParams, decode_grayscale, preprocess

ERASED_WIDTH = (0.1, 0.2)  # per side; a chest film's lungs start about a sixth of the way in


def erase_border(film: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of `film` with a random-width strip of random noise over each of its sides."""
    erased = film.copy()
    height, width = film.shape
    for side in range(4):
        extent = height if side < 2 else width
        strip = max(1, round(rng.uniform(*ERASED_WIDTH) * extent))
        region = (
            (slice(0, strip), slice(None)),
            (slice(height - strip, height), slice(None)),
            (slice(None), slice(0, strip)),
            (slice(None), slice(width - strip, width)),
        )[side]
        level, noise = rng.uniform(0, 255), rng.uniform(2, 12)
        erased[region] = np.clip(rng.normal(level, noise, erased[region].shape), 0, 255)
    return erased


def augmented_images(
    root: Path, files: list[str], params: PreprocessParams, seed: int
) -> np.ndarray:
    """(N, S, S) model inputs of root/file, each film border-erased before the usual
    preprocessing (the ONE preprocessing function serving uses too)."""
    rng = np.random.default_rng(seed)
    limits = IntakeLimits()
    draft_side = 2 * params.image_size if params.jpeg_draft else None
    images = []
    for file in files:
        film = decode_grayscale((root / file).read_bytes(), limits, draft_side)
        images.append(preprocess(erase_border(film, rng), params))
    return np.stack(images)
