"""How hard a phantom benchmark is: the knobs the generator turns, and three presets.

`easy` is the original generator (dense consolidations deep in a lung, nothing else to confuse a
reader), kept because tests train small models on it in seconds. `standard` is the benchmark the
demo model is trained and judged on: faint to dense and diffuse findings anywhere in the lung
fields, look-alikes in films of both classes, devices, text markers, AP films, dose noise, two
sites with their own exposure and processing, several films per patient. `hard` turns the same
knobs further. `standard` is tuned so that a logistic regression on intensity histograms stays
near chance-plus (ROC-AUC <= 0.75, docs/training.md) while a small CNN does well.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difficulty:
    name: str
    lesion_contrast: tuple[float, float]  # attenuation added at a lesion's peak, log-uniform
    lesions_anywhere: bool  # also behind the heart and at the bases, not just deep in a lung
    diffuse_probability: float  # bilateral patchy ground glass instead of focal consolidation
    lookalike_probability: float  # each look-alike, independently, on films of both classes
    device_probability: float  # ECG electrodes and leads, independent of the label
    text_probability: float  # burned-in text label, independent of the label
    rotation_degrees: float  # standard deviation of the patient's tilt
    scale_range: tuple[float, float]  # patient size on the film (PA)
    inspiration_range: tuple[float, float]  # diaphragm shift, fraction of the film height
    ap_probability: float  # AP films: magnified heart, shifted scale
    grain_range: tuple[float, float]  # quantum (dose) noise amplitude, fraction of full scale
    site_processing: bool  # the two sites expose and post-process films differently
    images_per_patient: tuple[int, int]


EASY = Difficulty(
    name="easy",
    lesion_contrast=(0.24, 0.34),
    lesions_anywhere=False,
    diffuse_probability=0.0,
    lookalike_probability=0.0,
    device_probability=0.0,
    text_probability=0.0,
    rotation_degrees=1.5,
    scale_range=(0.9, 1.04),
    inspiration_range=(0.0, 0.0),
    ap_probability=0.0,
    grain_range=(0.03, 0.08),
    site_processing=False,
    images_per_patient=(1, 3),
)
STANDARD = Difficulty(
    name="standard",
    lesion_contrast=(0.06, 0.32),
    lesions_anywhere=True,
    diffuse_probability=0.3,
    lookalike_probability=0.35,
    device_probability=0.2,
    text_probability=0.2,
    rotation_degrees=4.0,
    scale_range=(0.84, 1.08),
    inspiration_range=(-0.07, 0.04),
    ap_probability=0.3,
    grain_range=(0.03, 0.16),
    site_processing=True,
    images_per_patient=(2, 6),
)
HARD = Difficulty(
    name="hard",
    lesion_contrast=(0.03, 0.18),
    lesions_anywhere=True,
    diffuse_probability=0.45,
    lookalike_probability=0.5,
    device_probability=0.35,
    text_probability=0.35,
    rotation_degrees=6.0,
    scale_range=(0.8, 1.1),
    inspiration_range=(-0.1, 0.05),
    ap_probability=0.45,
    grain_range=(0.05, 0.22),
    site_processing=True,
    images_per_patient=(2, 6),
)
DIFFICULTIES = {preset.name: preset for preset in (EASY, STANDARD, HARD)}


def difficulty_named(name: str) -> Difficulty:
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)}, got {name!r}") from None
