"""DICOM intake: known answers for the grayscale pipeline, clear refusals, and no tag leaks.

Every file is written here with pydicom and carries a patient name, id and dates.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEG2000MCLossless

from shared.errors import AppError
from shared.imaging import (
    IntakeLimits,
    PreprocessParams,
    accept_upload,
    decode_grayscale,
    load_radiograph,
    sniff_format,
)
from tests.support.dicoms import PATIENT_TRACES, DicomSpec, dicom_file, encapsulated_file, ramp

LIMITS = IntakeLimits(max_pixels=1_000_000, min_side=32)
BASE = np.rint(ramp()).astype(np.uint8)  # 96x80, values 0..255
TWELVE_BIT = BASE.astype(np.uint16) * 16  # 0..4080 in a 16-bit container


def decode(spec: DicomSpec, preamble: bool = True) -> np.ndarray:
    return decode_grayscale(dicom_file(spec, preamble), LIMITS)


def max_difference(left: np.ndarray, right: np.ndarray) -> int:
    return int(np.abs(left.astype(int) - right.astype(int)).max())


def dicom_linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently of the code under test, onto 0..255."""
    fraction = np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return np.rint(fraction * 255)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (DicomSpec(BASE), BASE),
        (DicomSpec(255 - BASE, photometric="MONOCHROME1"), BASE),
        (DicomSpec(TWELVE_BIT, bits_stored=12), BASE),
        (DicomSpec(4095 - TWELVE_BIT, bits_stored=12, photometric="MONOCHROME1"), BASE),
        (DicomSpec(BASE.astype(np.uint16) * 257), BASE),
    ],
    ids=["mono2_8bit", "mono1_8bit", "mono2_12bit", "mono1_12bit", "mono2_16bit"],
)
def test_bit_depths_and_photometrics_without_voi(spec: DicomSpec, expected: np.ndarray) -> None:
    """No VOI: 8-bit data as stored; deeper data over its own range; MONOCHROME1 inverted."""
    decoded = decode(spec)
    assert decoded.dtype == np.uint8 and decoded.shape == BASE.shape
    assert max_difference(decoded, expected) == 0


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_centre_and_width_follow_the_standard(photometric: str) -> None:
    centre, width = 1500.0, 1200.0
    decoded = decode(
        DicomSpec(TWELVE_BIT, bits_stored=12, window=(centre, width), photometric=photometric)
    )
    expected = dicom_linear_window(TWELVE_BIT.astype(float), centre, width)
    if photometric == "MONOCHROME1":
        expected = 255 - expected
    assert max_difference(decoded, expected) <= 1
    assert decoded.min() == 0 and decoded.max() == 255  # the window clips both ends


def test_window_applies_to_rescaled_values() -> None:
    """Modality LUT first: a window in rescaled units equals the same window on raw values."""
    raw = decode(DicomSpec(TWELVE_BIT, bits_stored=12, window=(1024, 2048)))
    rescaled = decode(
        DicomSpec(TWELVE_BIT, bits_stored=12, window=(0, 2048), rescale=(1.0, -1024.0))
    )
    assert max_difference(raw, rescaled) <= 1


def test_eight_bit_voi_lut_with_4096_entries() -> None:
    """The case pydicom 3.0.2's own lookup wraps at 256; the LUT also beats the window."""
    table = [min(255, value // 8) for value in range(4096)]
    decoded = decode(DicomSpec(TWELVE_BIT, bits_stored=12, voi_lut=(0, 8, table), window=(100, 10)))
    assert max_difference(decoded, np.minimum(255, TWELVE_BIT // 8)) == 0


def test_twelve_bit_voi_lut_with_an_offset_first_value() -> None:
    first_mapped = 1000
    table = list(range(0, 4096, 2))  # 2048 entries, output 0..4094 of 12 bits
    decoded = decode(DicomSpec(TWELVE_BIT, bits_stored=12, voi_lut=(first_mapped, 12, table)))
    index = np.clip(TWELVE_BIT.astype(int) - first_mapped, 0, len(table) - 1)
    expected = np.rint(np.asarray(table)[index] * 255 / 4095)
    assert max_difference(decoded, expected) == 0


def test_files_without_preamble_are_accepted() -> None:
    data = dicom_file(DicomSpec(BASE), preamble=False)
    assert not data[128:132] == b"DICM" and sniff_format(data) == "dicom"
    assert max_difference(decode_grayscale(data, LIMITS), BASE) == 0


def test_rgb_is_reduced_to_luminance_and_multi_frame_reads_frame_one() -> None:
    colour = decode(DicomSpec(np.repeat(BASE[..., None], 3, axis=2), photometric="RGB"))
    assert max_difference(colour, BASE) <= 1
    frames = decode(DicomSpec(np.stack([BASE, 255 - BASE])))
    assert max_difference(frames, BASE) == 0


def test_jpeg_2000_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.fromarray(BASE).save(buffer, format="JPEG2000", irreversible=False)
    data = encapsulated_file(JPEG2000Lossless, buffer.getvalue(), *BASE.shape)
    assert max_difference(decode_grayscale(data, LIMITS), BASE) == 0


@pytest.mark.parametrize("syntax", [JPEG2000MCLossless, MPEG2MPML], ids=lambda uid: uid.name)
def test_syntaxes_without_a_codec_are_415_naming_the_syntax(syntax) -> None:
    data = encapsulated_file(syntax, b"\xff\x4f\xff\x51 not decodable here", 64, 64, bits=12)
    with pytest.raises(AppError) as caught:
        decode_grayscale(data, LIMITS)
    assert caught.value.status == 415 and caught.value.code == "unsupported_transfer_syntax"
    assert syntax.name in caught.value.message and str(syntax) in caught.value.message
    assert "Explicit VR Little Endian" in caught.value.message  # and says what to send instead


def broken_files() -> dict[str, tuple[bytes, int, str]]:
    intact = dicom_file(DicomSpec(TWELVE_BIT, bits_stored=12))
    no_pixels = dicom_file(DicomSpec(BASE))
    no_pixels = no_pixels[: no_pixels.rfind(b"\xe0\x7f\x10\x00")]  # cut at (7FE0,0010)
    dummy_jpeg2000 = encapsulated_file(JPEG2000Lossless, b"junk", 64, 64)
    return {
        "truncated_pixels": (intact[:-3000], 422, "corrupt_image"),
        "no_pixel_data": (no_pixels, 422, "dicom_without_pixels"),
        "dummy_jpeg2000": (dummy_jpeg2000, 422, "corrupt_image"),
        "too_small": (dicom_file(DicomSpec(BASE[:20, :20])), 422, "image_too_small"),
        "photometric": (
            dicom_file(DicomSpec(BASE, photometric="PALETTE COLOR")), 415, "unsupported_photometric"
        ),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(broken_files()))
def test_broken_files_get_clear_errors_without_tags(name: str) -> None:
    data, status, code = broken_files()[name]
    with pytest.raises(AppError) as caught:
        decode_grayscale(data, LIMITS)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    assert not any(trace.decode() in caught.value.message for trace in PATIENT_TRACES)
    assert caught.value.__cause__ is None  # pydicom's exception text is never chained in


def test_declared_size_over_the_limit_is_refused_before_decoding() -> None:
    with pytest.raises(AppError) as caught:
        decode_grayscale(dicom_file(DicomSpec(BASE)), IntakeLimits(max_pixels=5000))
    assert caught.value.status == 413 and caught.value.code == "too_many_pixels"


def test_stored_upload_is_a_tag_free_png_with_the_same_model_input() -> None:
    """The gateway stores a PNG of the display pixels; the worker's input must not change."""
    dicom = dicom_file(DicomSpec(4095 - TWELVE_BIT, bits_stored=12, photometric="MONOCHROME1"))
    stored = accept_upload(dicom, LIMITS).stored
    assert sniff_format(stored) == "png"
    assert not any(trace in stored for trace in PATIENT_TRACES)
    params = PreprocessParams(image_size=64)
    from_dicom = load_radiograph(dicom, params, LIMITS)
    assert np.array_equal(from_dicom, load_radiograph(stored, params, LIMITS))
    png = io.BytesIO()
    Image.fromarray(BASE).save(png, format="PNG")
    assert np.array_equal(from_dicom, load_radiograph(png.getvalue(), params, LIMITS))
    assert accept_upload(png.getvalue(), LIMITS).stored == png.getvalue()  # non-DICOM kept as sent


def test_pydicom_log_records_never_reach_our_logs(caplog: pytest.LogCaptureFixture) -> None:
    pydicom_logger = logging.getLogger("pydicom")
    previous = pydicom_logger.level
    pydicom_logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            decode(DicomSpec(BASE))
            with pytest.raises(AppError):
                decode_grayscale(broken_files()["truncated_pixels"][0], LIMITS)
    finally:
        pydicom_logger.setLevel(previous)
    assert not any(trace.decode() in caplog.text for trace in PATIENT_TRACES)
