"""One synthetic PA chest radiograph with ground-truth lung and lesion masks.

The anatomy, consolidations, film and artefacts are drawn by the modules beside this one;
`worker.phantoms.kermany` writes whole datasets. No real radiographs can be downloaded here,
so tests, the demo model and the Grad-CAM audit use these. Pure numpy + Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.phantoms.anatomy import draw_lesions, draw_patient, draw_pose
from worker.phantoms.artefacts import ARTIFACTS, draw_artifact
from worker.phantoms.difficulty import EASY, Difficulty
from worker.phantoms.film import expose_film, process_for_site, resize_field
from worker.phantoms.findings import draw_devices, draw_lookalikes, draw_pneumonia


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8 (size, size) grayscale radiograph
    lung_mask: np.ndarray  # bool (size, size): both lung fields
    lesion_mask: np.ndarray  # bool (size, size): consolidations (all False for NORMAL)
    label: int  # 1 = PNEUMONIA, 0 = NORMAL
    artifact: str | None  # which artefact was drawn, if any


def generate_phantom(
    rng: np.random.Generator,
    size: int = 256,
    *,
    pneumonia: bool,
    artifact: str | None = None,
    difficulty: Difficulty = EASY,
    patient: np.random.Generator | None = None,
    site: int = 0,
) -> Phantom:
    """One phantom; the same seed gives the same bytes. Anatomy, lesions, film and artefact use
    separate child generators, so with one seed a NORMAL and a PNEUMONIA phantom differ only by the
    lesion and an artefact changes only its own band: paired (counterfactual) studies come free.

    `difficulty` (worker.phantoms.difficulty) sets what the film may carry beyond EASY's dense
    consolidations. `patient` seeds the anatomy (a fresh copy of one patient's generator for each
    of their films: same body, new pose); `site` (0 or 1) picks the site's processing when the
    difficulty has site processing."""
    if artifact is not None and artifact not in ARTIFACTS:
        raise ValueError(f"artifact must be one of {ARTIFACTS} or None, got {artifact!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    anatomy_rng, lesion_rng, film_rng, artifact_rng = rng.spawn(4)
    render_size = size if size <= 160 else (size + 1) // 2  # smooth content: half res is plenty
    if difficulty is EASY:
        attenuation, lung_field, _ = draw_patient(patient or anatomy_rng, render_size)
        lesion_level = draw_lesions(lesion_rng, lung_field) if pneumonia else None
        if lesion_level is not None:
            attenuation += lesion_rng.uniform(*difficulty.lesion_contrast) * lesion_level
        image = expose_film(film_rng, attenuation, size)
    else:
        attenuation, lung_field, lesion_level = _varied_attenuation(
            (patient or anatomy_rng, anatomy_rng, lesion_rng), render_size, pneumonia, difficulty
        )
        image = expose_film(film_rng, attenuation, size, difficulty.grain_range)
        if difficulty.site_processing:
            image = process_for_site(film_rng, image, site)
    lung_mask = resize_field(lung_field, size) > 0.5
    lesion_mask = np.zeros_like(lung_mask)
    if lesion_level is not None:
        lesion_mask = (resize_field(lesion_level, size) > 0.3) & lung_mask
    covered = np.zeros_like(lung_mask)
    if artifact is not None:
        covered |= draw_artifact(artifact_rng, image, artifact)
    if artifact != "text_marker" and artifact_rng.random() < difficulty.text_probability:
        covered |= draw_artifact(artifact_rng, image, "text_marker")
    return Phantom(image, lung_mask & ~covered, lesion_mask & ~covered, int(pneumonia), artifact)


def _varied_attenuation(generators, size: int, pneumonia: bool, difficulty: Difficulty):
    """(attenuation, lungs' whole extent, lesion level or None) of a film beyond EASY: the
    patient's anatomy in this film's pose, findings anywhere in the lungs, look-alikes, devices."""
    patient_rng, pose_rng, lesion_rng = generators
    pose = draw_pose(pose_rng, difficulty)
    attenuation, _, lungs = draw_patient(patient_rng, size, pose)
    attenuation += draw_lookalikes(pose_rng, lungs, difficulty.lookalike_probability)
    if pose_rng.random() < difficulty.device_probability:
        attenuation += draw_devices(pose_rng, size)
    lesion_level = None
    if pneumonia:
        lesion_level, contrast = draw_pneumonia(lesion_rng, lungs, difficulty)
        attenuation += contrast * lesion_level
    return attenuation, lungs, lesion_level
