"""Image intake: every format reduces to the same tensor; bad files get precise errors."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from shared.imaging import (
    IntakeLimits,
    PreprocessParams,
    decode_grayscale,
    load_radiograph,
    preprocess,
    trim_flat_borders,
)
from tests.support.images import declared_huge_png, odd_formats, phantom, phantom_jpeg, phantom_png

LIMITS = IntakeLimits(max_pixels=50_000_000, min_side=32)
PARAMS = PreprocessParams(image_size=128)


@pytest.fixture(scope="module")
def base_image() -> np.ndarray:
    return phantom(seed=3, pneumonia=True, size=200).image[:, :180]  # not square on purpose


def test_every_odd_format_decodes_to_the_model_input_shape(base_image: np.ndarray) -> None:
    for name, data in odd_formats(base_image).items():
        tensor = load_radiograph(data, PARAMS, LIMITS)
        assert tensor.shape == (128, 128), name
        assert tensor.dtype == np.uint8, name


def test_lossless_variants_decode_to_the_same_pixels(base_image: np.ndarray) -> None:
    formats = odd_formats(base_image)
    reference = decode_grayscale(formats["gray_png"], LIMITS)
    np.testing.assert_array_equal(reference, base_image)
    rgb = decode_grayscale(formats["rgb_png"], LIMITS)
    assert np.abs(rgb.astype(int) - base_image.astype(int)).max() <= 1
    # 16-bit data is windowed over its own range, so compare with the stretched original.
    low, high = float(base_image.min()), float(base_image.max())
    stretched = np.rint((base_image - low) * 255.0 / (high - low))
    sixteen_bit = decode_grayscale(formats["sixteen_bit_png"], LIMITS)
    assert np.abs(sixteen_bit - stretched).max() <= 1


def test_exif_orientation_is_applied(base_image: np.ndarray) -> None:
    upright = decode_grayscale(odd_formats(base_image)["exif_rotated_jpeg"], LIMITS)
    assert upright.shape == base_image.shape  # stored rotated, displayed upright
    assert np.abs(upright.astype(int) - base_image.astype(int)).mean() < 4


def test_transparency_is_flattened_onto_black(base_image: np.ndarray) -> None:
    decoded = decode_grayscale(odd_formats(base_image)["rgba_png"], LIMITS)
    assert decoded.mean() < base_image.mean()  # alpha 200/255 darkens towards black


def test_sixteen_bit_uses_the_full_range() -> None:
    from PIL import Image

    from tests.support.images import encode

    ramp = np.tile(np.linspace(1000, 4000, 64, dtype=np.uint16), (64, 1))  # 12-bit data
    decoded = decode_grayscale(encode(Image.fromarray(ramp), "PNG"), LIMITS)
    assert decoded.min() == 0 and decoded.max() == 255


def test_preprocessing_is_deterministic() -> None:
    data = phantom_jpeg(seed=11)
    first = load_radiograph(data, PARAMS, LIMITS)
    for _ in range(3):
        np.testing.assert_array_equal(load_radiograph(data, PARAMS, LIMITS), first)


def test_flat_padding_is_trimmed_before_resizing() -> None:
    anatomy = np.random.default_rng(5).integers(30, 220, (128, 128), dtype=np.uint8)
    padded = np.pad(anatomy, ((20, 0), (0, 16)), constant_values=0)
    assert trim_flat_borders(padded, 0.2).shape == anatomy.shape
    params = PreprocessParams(image_size=128, trim_borders=True)
    difference = np.abs(preprocess(padded, params).astype(int) - anatomy.astype(int))
    assert difference.mean() < 2


def test_trimming_never_exceeds_its_limit() -> None:
    blank = np.zeros((100, 100), np.uint8)
    assert trim_flat_borders(blank, 0.2).shape == (60, 60)


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", InvalidImage, "empty_file"),
        (b"just some text, renamed to scan.png", UnsupportedMediaType, "unsupported_format"),
        (b"GIF89a" + b"\x00" * 64, UnsupportedMediaType, "unsupported_format"),
        (phantom_jpeg(seed=1)[:2000], InvalidImage, "corrupt_image"),
        (phantom_png(seed=1)[:300], InvalidImage, "corrupt_image"),
        (declared_huge_png(), PayloadTooLarge, "too_many_pixels"),
    ],
    ids=["empty", "text", "gif", "truncated_jpeg", "truncated_png", "declared_30000px"],
)
def test_bad_files_raise_precise_errors(data: bytes, error: type, code: str) -> None:
    with pytest.raises(error) as raised:
        load_radiograph(data, PARAMS, LIMITS)
    assert raised.value.code == code


def test_tiny_images_are_refused() -> None:
    from PIL import Image

    from tests.support.images import encode

    one_pixel = encode(Image.new("L", (1, 1), 128), "PNG")
    with pytest.raises(InvalidImage) as raised:
        load_radiograph(one_pixel, PARAMS, LIMITS)
    assert raised.value.code == "image_too_small"
    assert raised.value.status == 422
