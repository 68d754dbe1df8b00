"""Data loading: Kermany patient ids and splits, the decode cache, MedMNIST files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.imaging import IntakeLimits, PreprocessParams, load_radiograph, preprocess
from worker.training import datasets as data
from worker.training.datasets import Record, carve_validation, parse_patient_id

PARAMS = PreprocessParams(image_size=32)


@pytest.mark.parametrize(
    ("file_name", "patient"),
    [
        ("person1234_bacteria_5678.jpeg", "person1234"),
        ("person12_virus_34.jpeg", "person12"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0372-0001.jpeg", "NORMAL2-IM-0372"),
        ("person7_bacteria_21.png", "person7"),  # phantoms use the same patterns
        ("NORMAL2-IM-0007-0002.png", "NORMAL2-IM-0007"),
        # Names with more than one trailing group (they exist in the public set): the same
        # patient as the one-group names, not a patient of their own.
        ("IM-0011-0001-0002.jpeg", "IM-0011"),
        ("IM-0011-0001.jpeg", "IM-0011"),
        ("NORMAL2-IM-0832-0001-0002.jpeg", "NORMAL2-IM-0832"),
        ("NORMAL2-IM-0832-0001.jpeg", "NORMAL2-IM-0832"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1_virus_6.jpeg", "person1"),
        ("person1_virus_8.jpeg", "person1"),
        # Mendeley v2 names: the middle number is the patient.
        ("NORMAL-28501-0001.jpeg", "28501"),
        ("BACTERIA-1008087-0002.jpeg", "1008087"),
        ("VIRUS-1053221-0001.jpeg", "1053221"),
        ("scan_from_elsewhere.jpeg", "scan_from_elsewhere"),
        (
            "IM-0011.jpeg",
            "IM-0011",
        ),  # no film number: unknown pattern, its own patient  # unknown: its own patient
    ],
)
def test_patient_id_is_parsed_from_kermany_file_names(file_name: str, patient: str) -> None:
    assert parse_patient_id(file_name) == patient


def kermany_style_records(patients: int, seed: int) -> list[Record]:
    """Real-looking names: several images per patient, ~73% PNEUMONIA as in Kermany's train."""
    rng = np.random.default_rng(seed)
    records = []
    for number in range(patients):
        pneumonia = rng.random() < 0.73
        for image in range(int(rng.integers(1, 6))):
            name = (
                f"person{number}_bacteria_{number * 10 + image}.jpeg"
                if pneumonia
                else f"IM-{number:04d}-{image + 1:04d}.jpeg"
            )
            folder = "PNEUMONIA" if pneumonia else "NORMAL"
            records.append(Record(f"train/{folder}/{name}", int(pneumonia), parse_patient_id(name)))
    return records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_split_is_patient_disjoint_and_stratified(seed: int) -> None:
    records = kermany_style_records(400, seed)
    train, validation = carve_validation(records, fraction=0.15, seed=seed)
    assert sorted(train + validation, key=str) == sorted(records, key=str)
    assert not {r.patient_id for r in train} & {r.patient_id for r in validation}
    for label in (0, 1):
        share = sum(r.label == label for r in validation) / sum(r.label == label for r in records)
        assert share == pytest.approx(0.15, abs=0.03)
    assert carve_validation(records, 0.15, seed) == (train, validation)  # reproducible
    assert carve_validation(records, 0.15, seed + 10)[1] != validation


def write_png(path: Path, rng: np.random.Generator, side: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (side, side + 8), dtype=np.uint8)).save(path)


@pytest.fixture
def kermany_folder(tmp_path: Path) -> Path:
    """chest_xray/ with a shipped val, a test patient who also appears in train, and noise."""
    rng = np.random.default_rng(0)
    root = tmp_path / "chest_xray"
    for patient in range(1, 13):
        for image in range(1, 4):
            write_png(root / "train/PNEUMONIA" / f"person{patient}_bacteria_{image}.jpeg", rng)
            write_png(root / "train/NORMAL" / f"IM-{patient:04d}-{image:04d}.jpeg", rng)
    write_png(root / "val/NORMAL/NORMAL2-IM-1427-0001.jpeg", rng)
    write_png(root / "val/PNEUMONIA/person1946_bacteria_4874.jpeg", rng)
    write_png(root / "test/PNEUMONIA/person3_virus_16.jpeg", rng)  # person3 is also in train
    write_png(root / "test/NORMAL/NORMAL2-IM-0001-0001.jpeg", rng)
    (root / "train/NORMAL/.DS_Store").write_bytes(b"\0")
    return tmp_path


def test_kermany_folder_loads_with_manifest_and_no_test_patient_in_training(
    kermany_folder: Path,
) -> None:
    dataset = data.load_dataset(kermany_folder, PARAMS, validation_fraction=0.25, seed=3)
    manifest = dataset.manifest
    files = {split: manifest["files"][split] for split in data.SPLITS}
    assert manifest["shipped_counts"] == {"train": 72, "val": 2, "test": 2}
    assert manifest["dropped_for_test_patient_overlap"] == 3  # person3's three train images
    patients = {split: {entry["patient"] for entry in files[split]} for split in data.SPLITS}
    assert not patients["train"] & patients["val"]
    assert not (patients["train"] | patients["val"]) & patients["test"]
    assert {entry["label"] for entry in files["val"]} == {"NORMAL", "PNEUMONIA"}
    for split, part in dataset.splits.items():
        assert part.images.shape == (len(files[split]), 32, 32)
        assert part.images.dtype == np.uint8
        expected = [data.CLASS_NAMES.index(entry["label"]) for entry in files[split]]
        assert part.labels.tolist() == expected
        assert part.patients.tolist() == [entry["patient"] for entry in files[split]]
    assert manifest["duplicates"] == {"within_split": 0, "across_splits": 0, "dropped": []}
    json.dumps(manifest)  # serialisable as written beside the model
    # Another carve of the same pool reuses the decoded images: still one entry per group.
    data.load_dataset(kermany_folder, PARAMS, splits=("train", "val"), seed=4)
    assert len(list((kermany_folder / "chest_xray/.cache").glob("*.npy"))) == 2


def test_byte_identical_files_are_dropped_from_the_later_split_and_counted(
    kermany_folder: Path,
) -> None:
    root = kermany_folder / "chest_xray"
    train_file = root / "train/PNEUMONIA/person5_bacteria_1.jpeg"
    # The same bytes under another patient's name in test, and twice within val.
    (root / "test/PNEUMONIA/person900_bacteria_1.jpeg").write_bytes(train_file.read_bytes())
    val_file = root / "val/NORMAL/NORMAL2-IM-1427-0001.jpeg"
    (root / "val/NORMAL/NORMAL2-IM-1500-0001.jpeg").write_bytes(val_file.read_bytes())
    dataset = data.load_dataset(kermany_folder, PARAMS, validation_fraction=0.25, seed=3)
    duplicates = dataset.manifest["duplicates"]
    assert (duplicates["within_split"], duplicates["across_splits"]) == (1, 1)
    assert {(d["file"], d["duplicate_of"]) for d in duplicates["dropped"]} == {
        ("test/PNEUMONIA/person900_bacteria_1.jpeg", "train/PNEUMONIA/person5_bacteria_1.jpeg"),
        ("val/NORMAL/NORMAL2-IM-1500-0001.jpeg", "val/NORMAL/NORMAL2-IM-1427-0001.jpeg"),
    }
    kept = {entry["file"] for split in data.SPLITS for entry in dataset.manifest["files"][split]}
    assert "test/PNEUMONIA/person900_bacteria_1.jpeg" not in kept
    assert "val/NORMAL/NORMAL2-IM-1500-0001.jpeg" not in kept
    assert dataset.manifest["counts"]["test"]["images"] == 2  # as shipped before the copy
    assert len(dataset.splits["test"].patients) == 2


def test_cached_images_are_exactly_what_the_worker_would_compute(kermany_folder: Path) -> None:
    first = data.load_dataset(kermany_folder, PARAMS, splits=("test",))
    cache_files = sorted((kermany_folder / "chest_xray/.cache").glob("*.npy"))
    assert len(cache_files) == 1
    again = data.load_dataset(kermany_folder, PARAMS, splits=("test",))
    np.testing.assert_array_equal(first.splits["test"].images, again.splits["test"].images)
    assert sorted((kermany_folder / "chest_xray/.cache").glob("*.npy")) == cache_files
    root = kermany_folder / "chest_xray"
    for entry, image in zip(
        first.manifest["files"]["test"], first.splits["test"].images, strict=True
    ):
        served = load_radiograph((root / entry["file"]).read_bytes(), PARAMS, IntakeLimits())
        np.testing.assert_array_equal(image, served)


def test_cache_is_rebuilt_when_a_file_or_the_parameters_change(kermany_folder: Path) -> None:
    root = kermany_folder / "chest_xray"
    data.load_dataset(kermany_folder, PARAMS, splits=("test",))
    changed = root / "test/NORMAL/NORMAL2-IM-0001-0001.jpeg"
    write_png(changed, np.random.default_rng(99))
    os.utime(changed, ns=(1, 1))
    data.load_dataset(kermany_folder, PARAMS, splits=("test",))
    data.load_dataset(kermany_folder, PreprocessParams(image_size=40), splits=("test",))
    assert len(list((root / ".cache").glob("*.npy"))) == 3


def test_missing_layout_is_reported_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data.load_dataset(tmp_path, PARAMS)


@pytest.mark.parametrize("side", [28, 64])
def test_medmnist_npz_of_the_published_shape_loads(tmp_path: Path, side: int) -> None:
    rng = np.random.default_rng(side)
    sizes = {"train": 47, "val": 5, "test": 6}  # PneumoniaMNIST is 4708 / 524 / 624
    arrays = {}
    for split, count in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = tmp_path / ("pneumoniamnist.npz" if side == 28 else f"pneumoniamnist_{side}.npz")
    path.write_bytes(buffer.getvalue())
    dataset = data.load_dataset(path, PARAMS)
    for split, count in sizes.items():
        part = dataset.splits[split]
        assert part.images.shape == (count, 32, 32) and part.images.dtype == np.uint8
        np.testing.assert_array_equal(part.labels, arrays[f"{split}_labels"][:, 0])
        np.testing.assert_array_equal(
            part.images[0], preprocess(arrays[f"{split}_images"][0], PARAMS)
        )
    assert dataset.manifest["counts"]["test"]["images"] == 6
    assert dataset.manifest["source"]["kind"] == "medmnist"


def test_class_weights_balance_the_classes() -> None:
    labels = np.array([1] * 75 + [0] * 25)
    weights = data.class_weights(labels)
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert (weights[0] * 25 + weights[1] * 75) / 100 == pytest.approx(1.0)
