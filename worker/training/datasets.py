"""Training data: the Kermany folder layout and MedMNIST `.npz` files, as preprocessed uint8 arrays.

Every file goes through `shared.imaging.load_radiograph`, the function the workers serve with, so
training never sees pixels prepared differently. Kermany's shipped `val` split holds 16 images,
so validation is carved from train+val by patient (no patient on both sides) and by class; the
chosen split is written as a manifest beside the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.imaging import PreprocessParams, preprocess
from worker.phantoms.kermany import MANIFEST_NAME as PHANTOM_MANIFEST
from worker.training.decode_cache import decode_cached

log = logging.getLogger(__name__)

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # index = label; 1 = PNEUMONIA
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
MANIFEST_FILE = "split_manifest.json"
# person1234_bacteria_5678, person12_virus_34 -> person1234; IM-0115-0001 and IM-0011-0001-0002
# -> IM-0115, IM-0011 (every trailing group numbers a film of that patient); NORMAL2-IM-0372-0001
# and NORMAL2-IM-0832-0001-0002 -> NORMAL2-IM-0372, NORMAL2-IM-0832 (the two NORMAL series number
# patients separately). Mendeley v2's NORMAL-28501-0001, BACTERIA-1008087-0001 and
# VIRUS-1053221-0001 -> 28501, 1008087, 1053221: the class words share one patient number space.
PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_"),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)(?:-\d+)+$"),
    re.compile(r"^(?:NORMAL|BACTERIA|VIRUS)-(\d+)(?:-\d+)+$"),
)


@dataclass(frozen=True)
class Record:
    """One image file: where it is (relative to the dataset root), its class and its patient."""

    file: str
    label: int
    patient_id: str


@dataclass
class SplitData:
    images: np.ndarray  # uint8 (N, S, S), the output of load_radiograph / preprocess
    labels: np.ndarray  # int64 (N,), 1 = PNEUMONIA
    patients: np.ndarray  # str (N,): the bootstrap resamples these; one per image without ids


@dataclass
class Dataset:
    splits: dict[str, SplitData]  # only the splits that were asked for
    manifest: dict  # which file or row went where, and why
    fingerprint: str  # content identity of the source data, recorded in model.json


def parse_patient_id(file_name: str) -> str:
    """Patient id from a Kermany-style file name; an unknown pattern is its own patient."""
    stem = Path(file_name).stem
    for pattern in PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def find_kermany_root(path: Path) -> Path:
    """Accept the `chest_xray` folder itself or a folder that contains it."""
    for candidate in (path, path / "chest_xray"):
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise FileNotFoundError(
        f"{path} has no train/, val/ or test/ folder (expected chest_xray/{{train,val,test}}/"
        "{NORMAL,PNEUMONIA}/*.jpeg)."
    )


def scan_kermany(root: Path) -> dict[str, list[Record]]:
    """Every image under root/{split}/{NORMAL,PNEUMONIA}/, sorted so runs are reproducible."""
    found: dict[str, list[Record]] = {}
    for split in SPLITS:
        records = []
        for label, class_name in enumerate(CLASS_NAMES):
            folder = root / split / class_name
            files = sorted(folder.iterdir()) if folder.is_dir() else []
            records += [
                Record(f"{split}/{class_name}/{path.name}", label, parse_patient_id(path.name))
                for path in files
                if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            ]
        found[split] = records
    return found


def carve_validation(
    records: list[Record], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Split by whole patients, per class, until each class has ~`fraction` of its images in
    validation. A patient with any PNEUMONIA image counts as a PNEUMONIA patient."""
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_patient[record.patient_id].append(record)
    rng = np.random.default_rng(seed)
    validation_patients: set[str] = set()
    for label in range(len(CLASS_NAMES)):
        patients = sorted(p for p, group in by_patient.items() if _patient_label(group) == label)
        order = rng.permutation(len(patients))
        target = fraction * sum(len(by_patient[patient]) for patient in patients)
        taken = 0
        for index in order:
            if taken >= target:
                break
            validation_patients.add(patients[index])
            taken += len(by_patient[patients[index]])
    train = [record for record in records if record.patient_id not in validation_patients]
    validation = [record for record in records if record.patient_id in validation_patients]
    return train, validation


def _patient_label(group: list[Record]) -> int:
    return max(record.label for record in group)


def plan_kermany_splits(
    root: Path, validation_fraction: float, seed: int
) -> tuple[dict[str, list[Record]], dict]:
    """train/val/test record lists plus what was done to get them (for the manifest)."""
    on_disk, duplicates = drop_duplicates(root, scan_kermany(root))
    test_patients = {record.patient_id for record in on_disk["test"]}
    pool = on_disk["train"] + on_disk["val"]
    # A patient seen in test must not be trained or tuned on: drop them from the pool.
    kept = [record for record in pool if record.patient_id not in test_patients]
    train, validation = carve_validation(kept, validation_fraction, seed)
    notes = {
        "shipped_counts": {split: len(records) for split, records in on_disk.items()},
        "duplicates": duplicates,
        "dropped_for_test_patient_overlap": len(pool) - len(kept),
        "rule": (
            "byte-identical files dropped (the later copy in train, val, test and file order), "
            f"train+val pooled, patients also in test dropped, then a patient-disjoint, "
            f"class-stratified {validation_fraction:.0%} of images carved out as val "
            f"(seed {seed}); test used as shipped otherwise"
        ),
    }
    return {"train": train, "val": validation, "test": on_disk["test"]}, notes


def content_hash(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def drop_duplicates(
    root: Path, on_disk: dict[str, list[Record]]
) -> tuple[dict[str, list[Record]], dict]:
    """Keep the first copy of each byte-identical file, in SPLITS order then file order, so a
    film shipped in both train and test is trained on and not tested on, and a film shipped
    twice in one split is not counted twice. Byte identity only: a re-encoded copy slips by."""
    first_seen: dict[str, str] = {}
    kept: dict[str, list[Record]] = {}
    dropped = []
    for split in SPLITS:
        kept[split] = []
        for record in on_disk[split]:
            digest = content_hash(root / record.file)
            original = first_seen.setdefault(digest, record.file)
            if original == record.file:
                kept[split].append(record)
            else:
                dropped.append({"file": record.file, "duplicate_of": original, "sha256": digest})
    across = sum(d["file"].split("/")[0] != d["duplicate_of"].split("/")[0] for d in dropped)
    summary = {"within_split": len(dropped) - across, "across_splits": across, "dropped": dropped}
    return kept, summary


def load_kermany(
    path: Path,
    params: PreprocessParams,
    *,
    splits: tuple[str, ...] = SPLITS,
    validation_fraction: float = 0.15,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Dataset:
    root = find_kermany_root(path)
    plan, notes = plan_kermany_splits(root, validation_fraction, seed)
    cache_dir = cache_dir or root / ".cache"
    decoded: dict[tuple[str, ...], tuple[np.ndarray, dict[str, int]]] = {}
    loaded = {}
    for split in splits:
        # train and val are decoded (and cached) as one sorted pool, so carving them again with
        # another seed or fraction reuses the cache instead of decoding every file again.
        group = ("test",) if split == "test" else ("train", "val")
        if group not in decoded:
            files = sorted(record.file for member in group for record in plan[member])
            rows = {file: row for row, file in enumerate(files)}
            decoded[group] = decode_cached(root, files, params, cache_dir), rows
        images, rows = decoded[group]
        records = plan[split]
        loaded[split] = SplitData(
            images[[rows[record.file] for record in records]],
            np.array([record.label for record in records], dtype=np.int64),
            np.array([record.patient_id for record in records]),
        )
    fingerprint = kermany_fingerprint(root, plan)
    manifest = kermany_manifest(root, plan, notes, fingerprint, validation_fraction, seed)
    return Dataset(loaded, manifest, fingerprint)


def kermany_fingerprint(root: Path, plan: dict[str, list[Record]]) -> str:
    """sha256 over relative paths and byte sizes: stable when the folder is copied elsewhere."""
    entries = sorted(
        (record.file, (root / record.file).stat().st_size)
        for records in plan.values()
        for record in records
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def kermany_manifest(root, plan, notes, fingerprint, validation_fraction, seed) -> dict:
    return {
        "format": "pneumo-split-manifest/1",
        "source": {
            "kind": "kermany",
            "root": str(root),
            "fingerprint": fingerprint,
            **phantom_provenance(root),
        },
        "seed": seed,
        "validation_fraction": validation_fraction,
        **notes,
        "counts": {split: split_counts(records) for split, records in plan.items()},
        "files": {
            split: [
                {"file": r.file, "label": CLASS_NAMES[r.label], "patient": r.patient_id}
                for r in records
            ]
            for split, records in plan.items()
        },
    }


def phantom_provenance(root: Path) -> dict:
    """What generated a phantom folder (its generator's manifest); empty for real data."""
    path = root / PHANTOM_MANIFEST
    if not path.is_file():
        return {}
    generated = json.loads(path.read_text())
    return {
        "synthetic": bool(generated.get("synthetic", True)),
        "generator": generated.get("generator"),
        "generator_version": generated.get("version"),
        "generator_arguments": generated.get("args"),
    }


def split_counts(records: list[Record]) -> dict[str, int]:
    labels = [record.label for record in records]
    return {
        "images": len(records),
        **{name: labels.count(label) for label, name in enumerate(CLASS_NAMES)},
        "patients": len({record.patient_id for record in records}),
    }


def load_medmnist(
    path: Path, params: PreprocessParams, *, splits: tuple[str, ...] = SPLITS
) -> Dataset:
    """PneumoniaMNIST (any resolution): its own train/val/test, each image through preprocess()."""
    loaded, counts = {}, {}
    with np.load(path) as archive:
        for split in splits:
            raw = np.asarray(archive[f"{split}_images"])
            if raw.ndim == 4 and raw.shape[-1] == 1:
                raw = raw[..., 0]
            if raw.ndim != 3 or raw.dtype != np.uint8:
                raise ValueError(
                    f"{path}: {split}_images must be uint8 (N, H, W), got {raw.dtype} {raw.shape}."
                )
            labels = np.asarray(archive[f"{split}_labels"]).reshape(-1).astype(np.int64)
            images = np.stack([preprocess(image, params) for image in raw])
            # MedMNIST carries no patient ids: each image stands for itself.
            patients = np.array([f"{split}-{row}" for row in range(len(labels))])
            loaded[split] = SplitData(images, labels, patients)
            counts[split] = {
                "images": len(labels),
                "NORMAL": int(np.sum(labels == 0)),
                "PNEUMONIA": int(np.sum(labels == 1)),
            }
    with path.open("rb") as handle:
        fingerprint = hashlib.file_digest(handle, "sha256").hexdigest()
    manifest = {
        "format": "pneumo-split-manifest/1",
        "source": {"kind": "medmnist", "file": path.name, "fingerprint": fingerprint},
        "rule": "MedMNIST's published train/val/test splits, used as shipped (no patient ids)",
        "counts": counts,
    }
    return Dataset(loaded, manifest, fingerprint)


def load_dataset(
    path: Path,
    params: PreprocessParams,
    *,
    splits: tuple[str, ...] = SPLITS,
    validation_fraction: float = 0.15,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Dataset:
    """A MedMNIST `.npz` file or a Kermany-layout folder, whichever `path` is."""
    if path.suffix == ".npz":
        return load_medmnist(path, params, splits=splits)
    return load_kermany(
        path,
        params,
        splits=splits,
        validation_fraction=validation_fraction,
        seed=seed,
        cache_dir=cache_dir,
    )


def write_manifest(manifest: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MANIFEST_FILE
    target.write_text(json.dumps(manifest, indent=1) + "\n")
    return target


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, scaled so the average weight per image is 1."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    return {
        label: float(len(labels) / (len(counts) * max(count, 1)))
        for label, count in enumerate(counts)
    }
