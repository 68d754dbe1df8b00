"""Phantom datasets in the public Kermany layout (patients, splits, masks, manifest), and
realistic-size film JPEGs for throughput benchmarks.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worker.phantoms.artefacts import ARTIFACTS
from worker.phantoms.difficulty import EASY, difficulty_named
from worker.phantoms.film import SITES
from worker.phantoms.radiograph import Phantom, generate_phantom

GENERATOR_VERSION = "2.0.0"
MANIFEST_NAME = "manifest.json"  # its presence marks a folder as synthetic
SPLITS = ("train", "val", "test")
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # index = label
FILM_GRAIN_SIGMA = 2.5  # grey levels of per-pixel grain on benchmark JPEGs


@dataclass(frozen=True)
class _Patient:
    patient_id: int
    label: int
    image_count: int
    pathogen: str  # "bacteria" or "virus" in PNEUMONIA filenames, "" for NORMAL
    site: int  # index into SITES: whose scanner and processing made the films
    recorded_label: int  # the label the folder carries: `label` unless label noise flipped it


def write_kermany_dataset(
    out_dir: Path,
    *,
    count: int,
    size: int = 256,
    seed: int = 0,
    prevalence: float = 0.5,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    artifact: str | None = None,
    artifact_correlation: float = 0.0,
    image_format: str = "png",
    images_per_patient: tuple[int, int] | int | None = None,
    difficulty: str = "easy",
    label_noise: float = 0.0,
    held_out_site: int | None = None,
) -> dict:
    """Write `count` phantoms in the public Kermany layout and return the manifest.

    Layout: out_dir/{train,val,test}/{NORMAL,PNEUMONIA}/<stem>.png (or .jpeg), Kermany-style stems
    carrying a patient id (`person{pid}_{bacteria|virus}_{n}`, `NORMAL2-IM-{pid:04d}-{n:04d}`),
    0/255 masks at out_dir/masks/{split}/{CLASS}/<stem>_{lung,lesion}.png, and out_dir/manifest.json
    (generator version, seed, arguments, one entry per image). Patients, not images, draw the label
    (probability `prevalence`) and an image count in `images_per_patient` (a (min, max) range, or an
    int for exactly that many); a patient's images share label and split, and splits are filled per
    class by image count: patient-disjoint and stratified.

    Artefacts: with `artifact` set and correlation c, each train/val image is, with probability c,
    a "shortcut" image (artefact drawn iff PNEUMONIA); otherwise, and always in test, the artefact
    is drawn on a random 50% of images regardless of label. So c = 1 makes the artefact a perfect
    label proxy in train/val that fails in test, and c = 0 leaves it uninformative everywhere.
    Benchmark v2: `difficulty` (easy, standard, hard: worker.phantoms.difficulty) sets what films
    carry and, unless `images_per_patient` is given, how many films a patient has; a patient's
    films share the anatomy. Each patient belongs to one of two sites (SITES, half each); with
    `held_out_site`, all of that site's patients go to test and the others fill train and val
    (a held-out-site split). `label_noise` flips the recorded label (the folder) of that
    fraction of patients; the manifest keeps both (`label` as recorded, `true_label` as drawn).
    Refuses a non-empty `out_dir`, so stale files never sit beside a new manifest.
    """
    if images_per_patient is None:
        images_per_patient = difficulty_named(difficulty).images_per_patient
    if isinstance(images_per_patient, int):
        images_per_patient = (images_per_patient, images_per_patient)
    arguments = {name: value for name, value in locals().items() if name != "out_dir"}
    arguments |= {
        "split_fractions": list(split_fractions),
        "images_per_patient": list(images_per_patient),
    }
    _check_dataset_arguments(arguments)
    out_dir, rng, preset = Path(out_dir), np.random.default_rng(seed), difficulty_named(difficulty)
    if out_dir.exists() and any(out_dir.iterdir()):  # stale files would contradict the manifest
        raise FileExistsError(f"write_kermany_dataset: {out_dir} is not empty")
    site_rng = np.random.default_rng([seed, 1])  # apart from `rng`: easy datasets keep their bytes
    patients = _plan_patients((rng, site_rng), count, prevalence, images_per_patient, label_noise)
    files: list[dict] = []
    for patient, split in zip(
        patients, _assign_splits(patients, split_fractions, held_out_site), strict=True
    ):
        for number in range(1, patient.image_count + 1):
            drawn = _artifact_for(
                rng, artifact, artifact_correlation, split, patient.recorded_label
            )
            phantom_rng = np.random.default_rng([seed, len(files)])  # one stream per image
            phantom = generate_phantom(
                phantom_rng,
                size,
                pneumonia=patient.label == 1,
                artifact=drawn,
                difficulty=preset,
                patient=None if preset is EASY else _anatomy_of(seed, patient),
                site=patient.site,
            )
            stem = _kermany_stem(patient, number, len(files) + 1)
            files.append(_write_sample(out_dir, split, stem, phantom, patient, image_format))
    manifest = {"generator": __name__, "version": GENERATOR_VERSION, "synthetic": True}
    manifest |= {"seed": seed, "args": arguments, "counts": _counts(files), "files": files}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return manifest


def _check_dataset_arguments(arguments: dict) -> None:
    """Fail before anything is written, naming the argument and its bad value."""
    fractions, (fewest, most) = arguments["split_fractions"], arguments["images_per_patient"]
    valid = {
        "count": arguments["count"] >= 1,
        "size": arguments["size"] >= 32,
        "prevalence": 0 <= arguments["prevalence"] <= 1,
        "split_fractions": len(fractions) == 3 and min(fractions) >= 0 and sum(fractions) > 0,
        "artifact": arguments["artifact"] in (None, *ARTIFACTS),
        "artifact_correlation": 0 <= arguments["artifact_correlation"] <= 1,
        "image_format": arguments["image_format"] in ("png", "jpeg"),
        "images_per_patient": 1 <= fewest <= most,
        "label_noise": 0 <= arguments["label_noise"] < 0.5,
        "held_out_site": arguments["held_out_site"] in (None, *range(len(SITES))),
    }
    for name, ok in valid.items():
        if not ok:
            raise ValueError(f"write_kermany_dataset: invalid {name}={arguments[name]!r}")


def _plan_patients(
    generators, count: int, prevalence: float, images_per_patient, label_noise: float
) -> list[_Patient]:
    """Patients with a label, an image count, a site and a recorded label, until exactly `count`
    images are planned."""
    (rng, extra), patients = generators, list[_Patient]()
    remaining, (fewest, most) = count, images_per_patient
    while remaining > 0:
        image_count = min(int(rng.integers(fewest, most + 1)), remaining)
        label = int(rng.random() < prevalence)
        pathogen = ("bacteria" if rng.random() < 0.65 else "virus") if label else ""
        site, flipped = int(extra.random() < 0.5), bool(extra.random() < label_noise)
        recorded = 1 - label if flipped else label
        patients.append(_Patient(len(patients) + 1, label, image_count, pathogen, site, recorded))
        remaining -= image_count
    return patients


def _anatomy_of(seed: int, patient: _Patient) -> np.random.Generator:
    """The patient's own anatomy generator, the same fresh stream for each of their films."""
    return np.random.default_rng([seed, 2**31 - 1, patient.patient_id])


def _assign_splits(patients: list[_Patient], split_fractions, held_out_site) -> list[str]:
    """Each patient joins the split of its class furthest below its share of images: patient-
    disjoint, stratified, and the small splits get someone as early as possible. With a held-out
    site, its patients all go to test and the rest share train and val."""
    fractions = np.asarray(split_fractions, dtype=float)
    if held_out_site is not None:
        fractions[SPLITS.index("test")] = 0.0
    fractions = fractions / fractions.sum()
    taken = {0: np.zeros(len(SPLITS)), 1: np.zeros(len(SPLITS))}
    splits = []
    for patient in patients:
        if patient.site == held_out_site:
            splits.append("test")
            continue
        images = taken[patient.recorded_label]
        index = int(np.argmax(fractions * (images.sum() + patient.image_count) - images))
        images[index] += patient.image_count
        splits.append(SPLITS[index])
    return splits


def _artifact_for(rng, artifact: str | None, correlation: float, split: str, label: int):
    """The shortcut policy documented in write_kermany_dataset."""
    if artifact is None:
        return None
    shortcut = split != "test" and rng.random() < correlation
    drawn = bool(label) if shortcut else rng.random() < 0.5
    return artifact if drawn else None


def _counts(files: list[dict]) -> dict:
    """Images per split and class, e.g. {"train": {"NORMAL": 10, "PNEUMONIA": 11}, ...}."""
    counts = {split: dict.fromkeys(CLASS_NAMES, 0) for split in SPLITS}
    for entry in files:
        counts[entry["split"]][entry["class_name"]] += 1
    return counts


def _kermany_stem(patient: _Patient, number: int, running_number: int) -> str:
    if patient.recorded_label:
        return f"person{patient.patient_id}_{patient.pathogen}_{running_number}"
    return f"NORMAL2-IM-{patient.patient_id:04d}-{number:04d}"


def _write_sample(
    out_dir: Path, split: str, stem: str, phantom: Phantom, patient: _Patient, image_format: str
) -> dict:
    """Write the image and its two masks; return the manifest entry (paths relative to out_dir).
    The folder carries the recorded label; the masks show what was drawn."""
    class_name = CLASS_NAMES[patient.recorded_label]
    image_path = out_dir / split / class_name / f"{stem}.{image_format}"
    mask_dir = out_dir / "masks" / split / class_name
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if image_format == "jpeg" else {"compress_level": 3}
    Image.fromarray(phantom.image).save(image_path, format=image_format.upper(), **options)
    entry: dict[str, object] = {"path": image_path.relative_to(out_dir).as_posix(), "split": split}
    entry |= {"label": patient.recorded_label, "class_name": class_name}
    entry |= {"true_label": phantom.label, "artifact": phantom.artifact}
    entry |= {"patient_id": patient.patient_id, "site": SITES[patient.site]}
    for kind, mask in (("lung", phantom.lung_mask), ("lesion", phantom.lesion_mask)):
        mask_path = mask_dir / f"{stem}_{kind}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=3)
        entry[f"{kind}_mask"] = mask_path.relative_to(out_dir).as_posix()
    return entry


def render_large_jpeg(
    phantom: Phantom, rng: np.random.Generator, side: int = 1500, quality: int = 90
) -> bytes:
    """The phantom as a realistic-size film JPEG for decode and throughput benchmarks: bicubic
    upscale plus fine film grain. The grain is calibrated so files weigh about what Kermany's do
    (5,856 JPEGs of ~1,000-2,000 px in ~1.2 GB: ~200 KB each); 1,500 px gives ~250-300 KB."""
    upscaled = Image.fromarray(phantom.image).resize((side, side), Image.Resampling.BICUBIC)
    grain = rng.standard_normal((side, side), dtype=np.float32) * FILM_GRAIN_SIGMA
    film = np.clip(np.asarray(upscaled, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(film).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
