"""Decoding in strips changes no pixel, and its memory is known before it starts.

The references below are the whole-image conversions intake used before it worked in strips
(float64 copies of the whole film): every film here spans several strips, and must come out
byte for byte the same. The cost estimate is checked against the peak RSS of a fresh process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut, apply_windowing

from shared.dicom import STRIP_BYTES as DICOM_STRIP_BYTES
from shared.dicom import decode_dicom, scale_to_uint8
from shared.errors import AppError
from shared.imaging import STRIP_BYTES, IntakeLimits, decode_cost, decode_grayscale
from tests.support.corpus import corpus
from tests.support.dicoms import DicomSpec, dicom_file, ramp
from tests.support.images import encode, phantom
from tests.support.processes import REPO_ROOT

LIMITS = IntakeLimits()


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    """Tall enough that every conversion below runs over several strips."""
    base = phantom(5, True, 700).image
    return np.vstack([base, base[::-1], base])[:, :650]


def whole_image_gray(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA"):
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image.convert("RGBA"))
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def pillow_films(film: np.ndarray) -> dict[str, Image.Image]:
    gray = Image.fromarray(film)
    rgba = Image.fromarray(np.dstack([film, film[::-1], film, film // 2 + 100]), "RGBA")
    return {
        "sixteen_bit": Image.fromarray(film.astype(np.uint16) * 211 + 999),
        "rgba": rgba,
        "la": Image.fromarray(np.dstack([film, film[:, ::-1]]), "LA"),
        "palette_transparent": gray.convert("P"),
        "cmyk": gray.convert("RGB").convert("CMYK"),
    }


def test_strips_give_the_whole_image_conversion(film: np.ndarray) -> None:
    assert film.shape[0] * film.shape[1] * 8 > 2 * STRIP_BYTES  # several strips, even at 8 B/px
    for name, image in pillow_films(film).items():
        options = {"transparency": 0} if name == "palette_transparent" else {}
        data = encode(image, "JPEG" if name == "cmyk" else "PNG", **options)
        with Image.open(io.BytesIO(data)) as stored:
            expected = whole_image_gray(stored)
        assert np.array_equal(decode_grayscale(data, LIMITS), expected), name


def test_exif_orientation_is_applied_to_the_reduced_film(film: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    sixteen = Image.fromarray(film.astype(np.uint16) * 257)
    gray = decode_grayscale(encode(sixteen, "PNG", exif=exif), LIMITS)
    expected = whole_image_gray(sixteen.transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(gray, expected)


DICOM_FILMS = {
    "full_range_rescaled": {"rescale": (0.37, -1024)},
    "window_monochrome1": {"window": (2000, 1500), "photometric": "MONOCHROME1"},
    "window_rescaled": {"window": (-200, 1200), "rescale": (1.0, -1024)},
}


@pytest.mark.parametrize("name", DICOM_FILMS)
def test_dicom_strips_give_the_whole_image_conversion(name: str) -> None:
    stored = ramp(1500, 1200, 4095).astype(np.uint16)
    assert stored.size * 8 > 2 * DICOM_STRIP_BYTES
    data = dicom_file(DicomSpec(stored, bits_stored=12, **DICOM_FILMS[name]))
    dataset = dcmread(io.BytesIO(data))
    values = apply_modality_lut(dataset.pixel_array, dataset)
    if "WindowCenter" in dataset:
        low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset)
        expected = scale_to_uint8(apply_windowing(values, dataset), low, high)
    else:
        expected = scale_to_uint8(values, values.min(), values.max())
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        expected = 255 - expected
    assert np.array_equal(decode_dicom(data, LIMITS.max_pixels), expected)


def test_a_bad_header_costs_what_decoding_it_would_answer() -> None:
    """The estimate runs before the decode, so it must refuse exactly as the decode would,
    never fail in a way of its own."""
    for name, (data, _expected) in corpus().items():
        try:
            cost = decode_cost(data, LIMITS)
        except AppError as refused:
            with pytest.raises(AppError) as decoding:
                decode_grayscale(data, LIMITS)
            assert decoding.value.code == refused.code, name
        else:
            assert cost > 0, name


PEAK_PROBE = """
import json, os, sys
from shared.imaging import IntakeLimits, PreprocessParams, accept_upload, decode_cost
data, limits, params = sys.stdin.buffer.read(), IntakeLimits(), PreprocessParams()
def status(field):
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
accept_upload(open(sys.argv[1], "rb").read(), limits, params)  # load the codecs first
with open(f"/proc/{os.getpid()}/clear_refs", "w") as clear:
    clear.write("5")  # VmHWM starts again from the current RSS
before = status("VmRSS")
accept_upload(data, limits, params)
print(json.dumps({"growth": status("VmHWM") - before, "cost": decode_cost(data, limits, 256)}))
"""


def peak_and_cost(data: bytes, warm_up: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, warm_up], input=data, capture_output=True,
        cwd=REPO_ROOT, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["sixteen_bit_png", "rgba_png", "dicom"])
def test_the_cost_estimate_bounds_the_peak_memory_of_a_decode(kind: str, tmp_path) -> None:
    from tests.support import large_images

    warm_up = tmp_path / "small"
    if kind == "dicom":
        small = dicom_file(DicomSpec(ramp(64, 64, 4095).astype(np.uint16), bits_stored=12))
        stored = (ramp(3000, 3000, 4095)).astype(np.uint16)
        data = dicom_file(DicomSpec(stored, bits_stored=12, rescale=(0.5, -1024)))
    else:
        small = getattr(large_images, kind)(side=64)
        data = getattr(large_images, kind)(side=3000)
    warm_up.write_bytes(small)
    measured = peak_and_cost(data, str(warm_up))
    assert 0 < measured["growth"] <= measured["cost"]
