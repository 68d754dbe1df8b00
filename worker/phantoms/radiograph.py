"""One synthetic PA chest radiograph with ground-truth lung and lesion masks.

The anatomy, consolidations, film and artefacts are drawn by the modules beside this one;
`worker.phantoms.kermany` writes whole datasets. No real radiographs can be downloaded here,
so tests, the demo model and the Grad-CAM audit use these. Pure numpy + Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.phantoms.anatomy import draw_anatomy, draw_lesions
from worker.phantoms.artefacts import ARTIFACTS, draw_artifact
from worker.phantoms.film import expose_film, resize_field


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8 (size, size) grayscale radiograph
    lung_mask: np.ndarray  # bool (size, size): both lung fields
    lesion_mask: np.ndarray  # bool (size, size): consolidations (all False for NORMAL)
    label: int  # 1 = PNEUMONIA, 0 = NORMAL
    artifact: str | None  # which artefact was drawn, if any


def generate_phantom(
    rng: np.random.Generator, size: int = 256, *, pneumonia: bool, artifact: str | None = None
) -> Phantom:
    """One phantom; the same seed gives the same bytes. Anatomy, lesions, film and artefact use
    separate child generators, so with one seed a NORMAL and a PNEUMONIA phantom differ only by the
    lesion and an artefact changes only its own band: paired (counterfactual) studies come free."""
    if artifact is not None and artifact not in ARTIFACTS:
        raise ValueError(f"artifact must be one of {ARTIFACTS} or None, got {artifact!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    anatomy_rng, lesion_rng, film_rng, artifact_rng = rng.spawn(4)
    render_size = size if size <= 160 else (size + 1) // 2  # smooth content: half res is plenty
    attenuation, lung_field = draw_anatomy(anatomy_rng, render_size)
    lesion_level = draw_lesions(lesion_rng, lung_field) if pneumonia else None
    if lesion_level is not None:
        attenuation += lesion_rng.uniform(0.24, 0.34) * lesion_level
    image = expose_film(film_rng, attenuation, size)
    lung_mask = resize_field(lung_field, size) > 0.5
    lesion_mask = np.zeros_like(lung_mask)
    if lesion_level is not None:
        lesion_mask = (resize_field(lesion_level, size) > 0.3) & lung_mask
    if artifact is not None:
        covered = draw_artifact(artifact_rng, image, artifact)
        lung_mask &= ~covered
        lesion_mask &= ~covered
    return Phantom(image, lung_mask, lesion_mask, int(pneumonia), artifact)
