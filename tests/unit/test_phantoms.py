"""Contracts of the phantom generator: shapes, determinism, masks, anatomy, artefacts, datasets."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.phantoms.anatomy import LESION_AREA_RANGE
from worker.phantoms.artefacts import ARTIFACTS, artifact_band_mask, border_mask
from worker.phantoms.kermany import MANIFEST_NAME, render_large_jpeg, write_kermany_dataset
from worker.phantoms.radiograph import Phantom, generate_phantom

PATIENT_ID = re.compile(r"^(?:person(\d+)_(?:bacteria|virus)_\d+|NORMAL2-IM-(\d{4})-\d{4})$")


def make(seed: int, pneumonia: bool, size: int = 256, artifact: str | None = None) -> Phantom:
    return generate_phantom(
        np.random.default_rng(seed), size, pneumonia=pneumonia, artifact=artifact
    )


@pytest.mark.parametrize("size", [64, 128, 200, 256])
@pytest.mark.parametrize("pneumonia", [False, True])
def test_phantom_has_declared_shapes_and_types(size: int, pneumonia: bool) -> None:
    phantom = make(1, pneumonia, size)
    assert phantom.image.shape == phantom.lung_mask.shape == phantom.lesion_mask.shape
    assert phantom.image.shape == (size, size)
    assert phantom.image.dtype == np.uint8
    assert phantom.lung_mask.dtype == phantom.lesion_mask.dtype == np.bool_
    assert phantom.label == int(pneumonia) and phantom.artifact is None
    assert phantom.image.std() > 20  # a film with contrast, not a flat field


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    first, second, other = make(7, True), make(7, True), make(8, True)
    assert first.image.tobytes() == second.image.tobytes()
    assert np.array_equal(first.lesion_mask, second.lesion_mask)
    assert first.image.tobytes() != other.image.tobytes()


def test_one_generator_yields_different_phantoms_in_sequence() -> None:
    rng = np.random.default_rng(0)
    first, second = (generate_phantom(rng, 64, pneumonia=False) for _ in range(2))
    assert not np.array_equal(first.image, second.image)


@pytest.mark.parametrize("seed", range(10))
def test_lesions_lie_inside_the_lungs(seed: int) -> None:
    phantom = make(seed, pneumonia=True, size=128 if seed % 2 else 256)
    assert phantom.lesion_mask.any()
    assert not (phantom.lesion_mask & ~phantom.lung_mask).any()


def test_normal_phantom_has_no_lesion_but_has_lungs() -> None:
    for seed in range(5):
        phantom = make(seed, pneumonia=False)
        assert not phantom.lesion_mask.any() and phantom.label == 0
        assert 0.1 < phantom.lung_mask.mean() < 0.35


def test_lesion_area_stays_in_the_stated_range() -> None:
    areas = np.array([make(seed, pneumonia=True).lesion_mask.mean() for seed in range(50)])
    low, high = LESION_AREA_RANGE
    assert areas.min() >= low and areas.max() <= high, (areas.min(), areas.max())


def test_lesions_are_brighter_than_the_rest_of_the_lung() -> None:
    for seed in range(8):
        sick, healthy = make(seed, pneumonia=True), make(seed, pneumonia=False)
        lesion, clear_lung = sick.lesion_mask, sick.lung_mask & ~sick.lesion_mask
        assert sick.image[lesion].mean() > sick.image[clear_lung].mean() + 10
        # Same seed = same anatomy and exposure: the only change is the consolidation.
        assert sick.image[lesion].mean() > healthy.image[lesion].mean() + 20
        assert np.array_equal(sick.lung_mask, healthy.lung_mask)


def test_heart_makes_the_image_right_side_of_the_mediastinum_brighter() -> None:
    size = 128
    mean_film = np.mean([make(seed, False, size).image for seed in range(20)], axis=0)
    rows, centre, width = slice(int(0.45 * size), int(0.7 * size)), size // 2, int(0.15 * size)
    right = mean_film[rows, centre : centre + width].mean()
    left = mean_film[rows, centre - width : centre].mean()
    assert right > left + 10, (right, left)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_artifact_changes_only_its_band_and_never_the_lung_centre(artifact: str) -> None:
    band = artifact_band_mask(256, artifact)
    for seed in range(3):
        clean, marked = make(seed, True), make(seed, True, artifact=artifact)
        changed = clean.image != marked.image
        assert marked.artifact == artifact
        assert changed[band].mean() > 0.3  # drawn where it says
        assert not changed[~band].any()  # and nowhere else
        lung_rows, lung_cols = np.nonzero(clean.lung_mask)
        core = np.zeros_like(band)
        core[lung_rows, lung_cols] = True
        core[: int(0.25 * 256)] = False  # apices and the lateral rim may touch a band; the centre
        assert not (band & core & ~border_mask(256, 0.15)).any()
        assert not (marked.lesion_mask & band).any()


def test_unknown_artifact_is_rejected() -> None:
    with pytest.raises(ValueError, match="artifact"):
        make(0, True, 64, artifact="watermark")
    with pytest.raises(ValueError, match="artifact"):
        artifact_band_mask(64, "watermark")


def test_border_mask_is_an_outer_band_of_the_given_width() -> None:
    mask = border_mask(100, 0.1)
    assert mask[:10].all() and mask[:, -10:].all() and not mask[10:90, 10:90].any()
    assert mask.sum() == 100 * 100 - 80 * 80
    assert not border_mask(100, 0.0).any()


def read_manifest(out_dir: Path) -> dict:
    return json.loads((out_dir / MANIFEST_NAME).read_text())


def test_kermany_dataset_layout_patients_masks_and_manifest(tmp_path: Path) -> None:
    manifest = write_kermany_dataset(tmp_path, count=30, size=64, seed=3)
    assert manifest == read_manifest(tmp_path)
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*/*.png")}
    assert on_disk == {entry["path"] for entry in manifest["files"]}
    assert len(on_disk) == 30
    split_of_patient: dict[int, set[str]] = {}
    for entry in manifest["files"]:
        split, class_name, file_name = entry["path"].split("/")
        assert split == entry["split"] and class_name == ("NORMAL", "PNEUMONIA")[entry["label"]]
        match = PATIENT_ID.match(Path(file_name).stem)
        assert match, file_name
        assert int(match.group(1) or match.group(2)) == entry["patient_id"]
        split_of_patient.setdefault(entry["patient_id"], set()).add(split)
        for kind in ("lung", "lesion"):
            mask = np.asarray(Image.open(tmp_path / entry[f"{kind}_mask"]))
            assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    assert {entry["split"] for entry in manifest["files"]} == {"train", "val", "test"}
    assert manifest["seed"] == 3 and manifest["version"] and manifest["synthetic"] is True
    assert sum(sum(classes.values()) for classes in manifest["counts"].values()) == 30


def test_full_artifact_correlation_makes_the_artifact_a_train_shortcut(tmp_path: Path) -> None:
    manifest = write_kermany_dataset(
        tmp_path, count=40, size=64, seed=1, artifact="corner_marker", artifact_correlation=1.0
    )
    train = [entry for entry in manifest["files"] if entry["split"] == "train"]
    assert {entry["label"] for entry in train} == {0, 1}
    for entry in train:
        assert (entry["artifact"] == "corner_marker") == (entry["label"] == 1)
    marker = artifact_band_mask(64, "corner_marker")
    for entry in train[:6]:  # the manifest tells the truth about the pixels
        image = np.asarray(Image.open(tmp_path / entry["path"]))
        assert (image[marker].mean() > 150) == (entry["artifact"] is not None)


def test_dataset_can_be_written_as_jpeg_with_fixed_images_per_patient(tmp_path: Path) -> None:
    manifest = write_kermany_dataset(
        tmp_path, count=6, size=64, image_format="jpeg", images_per_patient=2
    )
    paths = [tmp_path / entry["path"] for entry in manifest["files"]]
    assert all(path.suffix == ".jpeg" and path.read_bytes()[:2] == b"\xff\xd8" for path in paths)
    assert len({entry["patient_id"] for entry in manifest["files"]}) == 3


def test_dataset_arguments_are_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prevalence"):
        write_kermany_dataset(tmp_path / "out", count=4, prevalence=1.5)
    assert not (tmp_path / "out").exists()
    (tmp_path / "stale.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not empty"):
        write_kermany_dataset(tmp_path, count=4)


def test_large_jpeg_has_the_requested_side_and_realistic_weight() -> None:
    data = render_large_jpeg(make(2, True), np.random.default_rng(0), side=1200)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (1200, 1200)
    assert len(data) > 150_000  # film grain keeps it from compressing to a toy size
