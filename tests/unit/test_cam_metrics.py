"""Known answers for the audit's measures, the mask geometry and the artefact painter."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from shared.imaging import (
    IntakeLimits,
    PreprocessParams,
    load_radiograph,
    preprocess,
    trim_flat_borders,
)
from worker.audit.artifact_augmentation import erase_border
from worker.audit.cam_metrics import (
    curve_area,
    deletion_images,
    energy_share,
    impute,
    mean_or_none,
    pointing_hit,
    pointing_tolerance,
    rank_correlation,
    relevance_order,
    structural_similarity,
)
from worker.audit.data import Entry, load_entry, stratified_subset
from worker.audit.mask_geometry import flat_border_box, preprocess_box, transform_mask
from worker.phantoms.artefacts import ARTIFACTS
from worker.phantoms.radiograph import generate_phantom


def test_energy_share_is_the_masked_fraction_of_positive_mass() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:2] = True  # a quarter of the image
    assert energy_share(np.ones((8, 8)), mask) == pytest.approx(0.25)
    inside_only = np.where(mask, 0.3, 0.0)
    assert energy_share(inside_only, mask) == pytest.approx(1.0)
    # Scaling the map does not change the share: it is normalised to sum 1 first.
    assert energy_share(7 * inside_only + np.where(mask, 0, 0.1), mask) == pytest.approx(
        energy_share(inside_only + np.where(mask, 0, 0.1 / 7), mask)
    )
    assert energy_share(np.zeros((8, 8)), mask) is None


def test_pointing_game_counts_the_peak_and_honours_the_tolerance() -> None:
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:20] = True
    cam = np.zeros((64, 64))
    cam[15, 15] = 1.0
    assert pointing_hit(cam, mask)
    cam[15, 15], cam[15, 23] = 0.0, 1.0  # 4 px right of the lesion's edge (column 19)
    assert not pointing_hit(cam, mask)
    assert pointing_hit(cam, mask, tolerance=4) and not pointing_hit(cam, mask, tolerance=3)
    assert pointing_tolerance(224) == 15 and pointing_tolerance(64) == 4
    assert not pointing_hit(cam, np.zeros_like(mask), tolerance=10)


def test_rank_correlation_matches_scipy_and_refuses_constant_maps() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.random((16, 16)), rng.random((16, 16))
    second[:8] += first[:8]
    expected = stats.spearmanr(first.ravel(), second.ravel()).statistic
    assert rank_correlation(first, second) == pytest.approx(expected)
    assert rank_correlation(first, first) == pytest.approx(1.0)
    assert rank_correlation(first, -first) == pytest.approx(-1.0)
    assert rank_correlation(first, np.zeros((16, 16))) is None


def test_ssim_is_one_for_identical_maps_and_drops_with_structure() -> None:
    cam = np.zeros((32, 32))
    cam[8:16, 8:16] = 1.0
    assert structural_similarity(cam, cam) == pytest.approx(1.0)
    moved = np.roll(cam, 12, axis=1)
    assert structural_similarity(cam, moved) < structural_similarity(cam, 0.9 * cam) < 1.0
    assert structural_similarity(cam, moved) == pytest.approx(structural_similarity(moved, cam))
    # Two flat maps: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1).
    flat_a, flat_b, c1 = np.full((16, 16), 0.2), np.full((16, 16), 0.6), 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert structural_similarity(flat_a, flat_b) == pytest.approx(expected)


def test_deletion_removes_the_most_relevant_pixels_first_and_imputes_from_neighbours() -> None:
    rng = np.random.default_rng(2)
    image = np.full((32, 32), 60, np.uint8)
    image[4:8, 4:8] = 250  # the "lesion": 16 of 1024 pixels
    cam = (image > 100).astype(float)
    order = relevance_order(cam, rng)
    assert set(order[:16]) == set(np.flatnonzero(image.ravel() > 100))
    steps = deletion_images(image, order, rng, fractions=(0.0, 16 / 1024, 0.5))
    np.testing.assert_array_equal(steps[0], image)  # nothing removed, nothing changed
    # With the bright block removed first, its pixels are re-filled from the dark surround.
    assert steps[1][4:8, 4:8].mean() < 80
    assert np.abs(steps[1].astype(int) - 60)[image == 60].max() == 0  # the rest untouched


def test_imputation_of_everything_falls_back_to_the_mean() -> None:
    image = np.random.default_rng(3).integers(0, 255, (16, 16), dtype=np.uint8)
    filled = impute(image, np.ones((16, 16), bool), np.random.default_rng(4))
    assert abs(float(filled.mean()) - float(image.mean())) < 3


def test_curve_area_is_the_mean_height() -> None:
    fractions = (0.0, 0.25, 0.5)
    assert curve_area(fractions, np.array([0.7, 0.7, 0.7])) == pytest.approx(0.7)
    assert curve_area(fractions, np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert mean_or_none([None, 1.0, 3.0, float("nan")]) == 2.0 and mean_or_none([None]) is None


def padded_film(seed: int = 5) -> np.ndarray:
    """A phantom film with flat padding on every side and uneven widths."""
    film = generate_phantom(np.random.default_rng(seed), 120, pneumonia=True).image
    return np.pad(film, ((14, 5), (9, 21)), constant_values=0)


@pytest.mark.parametrize("artifact", [None, *ARTIFACTS])
def test_the_box_is_exactly_what_trimming_keeps(artifact: str | None) -> None:
    film = generate_phantom(np.random.default_rng(6), 128, pneumonia=False, artifact=artifact).image
    for gray in (film, padded_film()):
        box = flat_border_box(gray, 0.2)
        np.testing.assert_array_equal(
            gray[box.top : box.bottom, box.left : box.right], trim_flat_borders(gray, 0.2)
        )


@pytest.mark.parametrize("fit", ["squash", "letterbox"])
@pytest.mark.parametrize("trim", [True, False])
def test_a_mask_lands_where_its_pixels_land(trim: bool, fit: str) -> None:
    """Paint a bright square, preprocess the film, move the square's mask: they coincide."""
    gray = np.minimum(padded_film(), 150)  # so that only the square is brighter than 200
    mask = np.zeros(gray.shape, bool)
    mask[50:80, 40:70] = True
    gray[mask] = 255
    params = PreprocessParams(image_size=64, trim_borders=trim, fit=fit)
    moved = transform_mask(mask, gray.shape, preprocess_box(gray, params), params)
    bright = preprocess(gray, params) > 200
    assert moved.shape == (64, 64)
    assert (moved & bright).sum() / (moved | bright).sum() > 0.85


def test_masks_follow_a_draft_decoded_jpeg(tmp_path: Path) -> None:
    """A big JPEG is decoded at reduced scale; its full-size mask must still line up."""
    gray = np.kron(np.minimum(padded_film(), 150), np.ones((4, 4), np.uint8))  # 4x the film
    lesion = np.zeros(gray.shape, bool)
    lesion[200:320, 160:280] = True
    gray[lesion] = 255
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
    (tmp_path / "film.jpeg").write_bytes(buffer.getvalue())
    for name, mask in (("lung", lesion), ("lesion", lesion)):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / f"{name}.png")
    params = PreprocessParams(image_size=64)
    entry = Entry("film.jpeg", 1, "lung.png", "lesion.png")
    image, (_, moved, artefact) = load_entry(tmp_path, entry, params)
    np.testing.assert_array_equal(image, load_radiograph(buffer.getvalue(), params, IntakeLimits()))
    bright = image > 200
    assert (moved & bright).sum() / (moved | bright).sum() > 0.85
    assert not artefact.any()


@pytest.mark.parametrize(("artifact", "hidden"), [("border_band", True), ("text_marker", False)])
def test_border_erasing_hides_a_border_artefact_but_not_one_further_in(
    artifact: str, hidden: bool
) -> None:
    """Same anatomy with and without the artefact, same erasing draws: identical films when the
    artefact lies in the erased frame (a 6 % band under 10-20 % strips); a text label 15-24 %
    from the top is only partly covered, so the films still differ."""
    clean = generate_phantom(np.random.default_rng(8), 128, pneumonia=True).image
    marked = generate_phantom(np.random.default_rng(8), 128, pneumonia=True, artifact=artifact)
    assert not np.array_equal(clean, marked.image)
    erased_clean = erase_border(clean, np.random.default_rng(9))
    erased_marked = erase_border(marked.image, np.random.default_rng(9))
    assert np.array_equal(erased_clean, erased_marked) == hidden
    centre = (slice(40, 88), slice(40, 88))  # the erasing never reaches the middle
    np.testing.assert_array_equal(erased_clean[centre], clean[centre])


def test_a_stratified_subset_keeps_each_class_share() -> None:
    entries = [Entry(f"{index}.png", int(index % 4 == 0)) for index in range(200)]
    chosen = stratified_subset(entries, 40, seed=0)
    assert len(chosen) == 40 and sum(entry.label for entry in chosen) == 10
    assert stratified_subset(entries, 40, seed=0) == chosen
    assert stratified_subset(entries, None, seed=0) == entries


def test_manifest_masks_are_read_with_their_images(tmp_path: Path) -> None:
    from worker.audit.data import load_audit_data
    from worker.phantoms.kermany import write_kermany_dataset

    write_kermany_dataset(
        tmp_path,
        count=12,
        size=96,
        seed=1,
        split_fractions=(0, 0, 1),
        artifact="padding",
        artifact_correlation=0.0,
    )
    data = load_audit_data(tmp_path, PreprocessParams(image_size=48))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert data.images.shape == (12, 48, 48) and data.has_masks
    assert data.labels.tolist() == [entry["label"] for entry in manifest["files"]]
    for lesion, label in zip(data.lesion_masks, data.labels, strict=True):
        assert lesion.any() == bool(label)


def test_cascading_randomisation_goes_from_the_head_down_and_is_seeded() -> None:
    from worker.audit.randomisation import cascade_stages, reinitialise
    from worker.model.architecture import Architecture, build_classifier

    model = build_classifier(Architecture(image_size=32, block_filters=(4, 8, 8), dense_units=8))
    stages = cascade_stages(model)
    assert [stage.name for stage in stages] == [
        "head",
        "+ conv block 2",
        "+ conv block 1",
        "+ conv block 0",
    ]
    assert [layer.name for layer in stages[0].layers] == ["logit", "dense"]
    assert {layer.name for layer in stages[1].layers} == {"conv2a", "bn2a", "conv2b", "bn2b"}
    dense = model.get_layer("head").get_layer("dense")
    before = dense.kernel.numpy().copy()
    reinitialise(dense, seed=3)
    first = dense.kernel.numpy().copy()
    reinitialise(dense, seed=3)
    assert not np.allclose(before, first)
    np.testing.assert_array_equal(first, dense.kernel.numpy())


def test_the_audit_scores_exactly_the_methods_a_job_can_ask_for() -> None:
    from shared.schemas import EXPLANATION_METHODS
    from worker.model.gradcam import METHOD_NAMES

    assert tuple(EXPLANATION_METHODS) == tuple(METHOD_NAMES)
