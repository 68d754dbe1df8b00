"""Compressed DICOM decodes (pylibjpeg's libjpeg and openjpeg plugins): one film per transfer
syntax, encoded here, must come out as the uncompressed file does; lossless ones exactly."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from shared.dicom import decodable_syntaxes
from shared.imaging import IntakeLimits, decode_grayscale
from tests.support.dicoms import DicomSpec, dicom_file, encapsulated_file, ramp
from tests.support.lossless_jpeg import encode_lossless_jpeg

LIMITS = IntakeLimits(max_pixels=1_000_000, min_side=32)
TWELVE_BIT = (np.rint(ramp(96, 80)) * 16).astype(np.uint16)
TWELVE_BIT[10, 10], TWELVE_BIT[20, 20] = 4095, 0  # sharp edges a lossy coder would blur
NEAR_LOSSLESS_ERROR = 2  # JPEG-LS NEAR: each stored value within 2 of the original


def uncompressed() -> bytes:
    return dicom_file(DicomSpec(TWELVE_BIT, bits_stored=12))


def compressed_by_pydicom(syntax: UID, **options: object) -> bytes:
    """Encoded by pydicom's own plugins (pyjpegls for JPEG-LS, openjpeg for JPEG 2000)."""
    dataset = pydicom.dcmread(io.BytesIO(uncompressed()))
    dataset.compress(syntax, **options)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def compressed_lossless_jpeg(syntax: UID) -> bytes:
    frame = encode_lossless_jpeg(TWELVE_BIT, precision=12)
    return encapsulated_file(syntax, frame, *TWELVE_BIT.shape, bits=12)


ENCODED = {
    JPEGLSLossless: (lambda: compressed_by_pydicom(JPEGLSLossless), 0),
    JPEGLSNearLossless: (
        lambda: compressed_by_pydicom(JPEGLSNearLossless, jls_error=NEAR_LOSSLESS_ERROR),
        1,
    ),
    JPEG2000Lossless: (lambda: compressed_by_pydicom(JPEG2000Lossless), 0),
    JPEG2000: (lambda: compressed_by_pydicom(JPEG2000, j2k_psnr=[60]), 2),
    JPEGLosslessSV1: (lambda: compressed_lossless_jpeg(JPEGLosslessSV1), 0),
    JPEGLossless: (lambda: compressed_lossless_jpeg(JPEGLossless), 0),
}


@pytest.mark.parametrize("syntax", list(ENCODED), ids=lambda uid: uid.name)
def test_compressed_film_decodes_as_the_uncompressed_one(syntax: UID) -> None:
    encode, tolerance = ENCODED[syntax]
    data = encode()
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == syntax
    expected = decode_grayscale(uncompressed(), LIMITS)
    decoded = decode_grayscale(data, LIMITS)
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    difference = np.abs(decoded.astype(int) - expected.astype(int)).max()
    assert difference <= tolerance, f"{syntax.name}: off by {difference} grey levels"
    assert syntax.name in decodable_syntaxes()
