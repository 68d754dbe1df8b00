"""DICOM intake: the pixels come out as display-ready uint8, every tag stays behind.

Order of operations follows the DICOM grayscale pipeline (PS3.4 N.2): stored values ->
Modality LUT (rescale slope/intercept) -> VOI LUT or window centre/width -> MONOCHROME1
inversion. Without a VOI the full range of the image is shown, as for 16-bit PNGs.

Privacy: nothing read from the header (patient name, ids, dates, free text) is ever put in a
message, a log record or the store. Errors name only encodings (transfer syntax, photometric
interpretation), pydicom's own warnings and log records (which can quote element values) are
silenced, and its exceptions are never chained into ours.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from functools import lru_cache

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_windowing, get_decoder, pixel_array
from pydicom.uid import UID, AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from shared.errors import (
    CorruptImage,
    DicomWithoutPixels,
    TooManyPixels,
    UnsupportedPhotometric,
    UnsupportedTransferSyntax,
)

PREAMBLE_BYTES = 128
DICOM_MAGIC = b"DICM"
# A dataset saved without the preamble starts with a little-endian tag of group 0002 (file meta)
# or 0008 (identifying information), whose first element number is below 0x0100.
BARE_DATASET_GROUPS = (b"\x02\x00", b"\x08\x00")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")
# Defined terms only: a free-text value could carry anything, so it is never echoed.
KNOWN_PHOTOMETRIC = (
    *MONOCHROME,
    *COLOUR,
    "PALETTE COLOR",
    "HSV",
    "ARGB",
    "CMYK",
    "YBR_PARTIAL_422",
)
# What pydicom raises on malformed or truncated input; each becomes one of our errors.
PYDICOM_FAILURES = (
    InvalidDicomError, AttributeError, KeyError, IndexError, TypeError, ValueError,
    OSError, EOFError, RuntimeError, NotImplementedError, OverflowError, struct.error,
)  # fmt: skip
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114])

# pydicom's records can quote element values; keep them out of every log the service writes.
logging.getLogger("pydicom").propagate = False


def looks_like_dicom(data: bytes) -> bool:
    """Part 10 files carry `DICM` after a 128-byte preamble; bare datasets are accepted too."""
    if data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == DICOM_MAGIC:
        return True
    return len(data) > 8 and data[:2] in BARE_DATASET_GROUPS and data[3] == 0


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """DICOM bytes -> 2-D uint8, dark = low attenuation, as a radiologist's monitor shows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(data)
        check_decodable(dataset, max_pixels)
        stored = first_frame(dataset)
        return to_display_uint8(stored, dataset)


def read_dataset(data: bytes) -> Dataset:
    has_preamble = data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == DICOM_MAGIC
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except PYDICOM_FAILURES as error:
        raise CorruptImage(f"The DICOM file could not be read ({type(error).__name__}).") from None
    if "PixelData" not in dataset or "Rows" not in dataset or "Columns" not in dataset:
        raise DicomWithoutPixels("The DICOM file holds no image.")
    _settle_transfer_syntax(dataset)
    return dataset


def _settle_transfer_syntax(dataset: Dataset) -> None:
    """A bare dataset has no file meta: record the encoding pydicom found, so it can decode."""
    if dataset.file_meta.get("TransferSyntaxUID"):
        return
    implicit_vr, _little_endian = dataset.original_encoding
    dataset.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian
    )


def transfer_syntax(dataset: Dataset) -> UID:
    return UID(dataset.file_meta.TransferSyntaxUID)


def can_decode(syntax: UID) -> bool:
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # a syntax pydicom has no decoder for at all
        return False


@lru_cache(maxsize=1)
def decodable_syntaxes() -> tuple[str, ...]:
    return tuple(syntax.name for syntax in AllTransferSyntaxes if can_decode(syntax))


def check_decodable(dataset: Dataset, max_pixels: int) -> None:
    syntax = transfer_syntax(dataset)
    if not can_decode(syntax):
        raise UnsupportedTransferSyntax(
            f"DICOM transfer syntax '{syntax.name}' ({syntax}) cannot be decoded by this "
            f"service. Accepted: {'; '.join(decodable_syntaxes())}."
        )
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if rows * columns > max_pixels:
        raise TooManyPixels(
            f"The DICOM image declares {columns}x{rows} pixels; the limit is {max_pixels}."
        )


def first_frame(dataset: Dataset) -> np.ndarray:
    """Stored values of frame 1 (a radiograph has one; a multi-frame file is read no further)."""
    try:
        return pixel_array(dataset, index=0 if int(dataset.get("NumberOfFrames", 1)) > 1 else None)
    except PYDICOM_FAILURES as error:
        raise CorruptImage(
            f"The DICOM pixel data could not be decoded ({type(error).__name__})."
        ) from None


def to_display_uint8(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric in COLOUR or stored.ndim == 3:
        return _luminance_uint8(stored)
    if photometric not in MONOCHROME:
        named = photometric if photometric in KNOWN_PHOTOMETRIC else "this"
        raise UnsupportedPhotometric(
            f"DICOM photometric interpretation {named!r} is not supported; send MONOCHROME1, "
            "MONOCHROME2 or RGB."
        )
    try:
        display = _apply_voi(apply_modality_lut(stored, dataset), dataset)
    except PYDICOM_FAILURES as error:
        raise CorruptImage(
            f"The DICOM LUT or window is invalid ({type(error).__name__})."
        ) from None
    # MONOCHROME1 shows its lowest value as white: invert once, after the VOI, per the standard.
    return 255 - display if photometric == "MONOCHROME1" else display


def _apply_voi(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """VOI LUT first (it wins over a window when both are present), then window, else full range."""
    if dataset.get("VOILUTSequence"):
        return _apply_voi_lut(values, dataset)
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        # The window's output range depends on bit depth, sign and rescale; let pydicom say it
        # by windowing the two infinities rather than restating its rules here.
        low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset)
        return scale_to_uint8(apply_windowing(values, dataset), float(low), float(high))
    if values.dtype == np.uint8:
        return values  # 8-bit data is display-ready, as an 8-bit PNG is
    return scale_to_uint8(values, float(values.min()), float(values.max()))


def _apply_voi_lut(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Table lookup, output scaled from the LUT's declared depth.

    Done here rather than by `pydicom.pixels.apply_voi`: pydicom 3.0.2 indexes an 8-bit LUT
    with a uint8 array, so a 4096-entry table wraps every 256 values.
    """
    item = dataset.VOILUTSequence[0]
    entries, first_mapped, bits = (int(value) for value in item.LUTDescriptor)
    table = _lut_table(
        item, entries or 65536, little_endian=dataset.original_encoding[1] is not False
    )
    index = np.clip(np.rint(values) - first_mapped, 0, len(table) - 1).astype(np.intp)
    return scale_to_uint8(table[index], 0.0, float(2**bits - 1))


def _lut_table(item: Dataset, entries: int, little_endian: bool) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, bytes):  # VR OW: raw 16-bit words in the file's byte order
        return np.frombuffer(data, dtype="<u2" if little_endian else ">u2")[:entries]
    words = [data] if isinstance(data, int) else list(data)  # VR US: one value or many
    return np.asarray(words, dtype=np.float64)[:entries]


def _luminance_uint8(rgb: np.ndarray) -> np.ndarray:
    """pydicom hands YBR back as RGB; reduce to luma like Pillow's "L" conversion."""
    luma = rgb[..., :3].astype(np.float64) @ LUMINANCE_WEIGHTS
    if rgb.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return scale_to_uint8(luma, float(luma.min()), float(luma.max()))


def scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255; a flat range gives a black image."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
