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
from collections.abc import Callable
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
# Rows converted per step: a few megabytes of float64 instead of copies of the whole film.
STRIP_BYTES = 4 * 1024 * 1024

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


def dicom_decode_cost(data: bytes, max_pixels: int, gray_copies: int, allowance: int) -> int:
    """Bytes `decode_dicom` holds at its peak, from the tags before the pixels alone: pydicom's
    copy of the pixel data and the frame it decodes from it (three frames' worth for a
    compressed or colour one: the codec's buffer, the colour conversion), `gray_copies` uint8
    images and `allowance` for strips. Raises what decoding would for a bad header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = read_dataset(data, stop_before_pixels=True)
        check_decodable(header, max_pixels)
        try:
            rows, columns = int(header.Rows), int(header.Columns)
            samples = int(header.get("SamplesPerPixel") or 1)
            sample_bytes = max(1, -(-int(header.get("BitsAllocated") or 16) // 8))
            native = not transfer_syntax(header).is_compressed and samples == 1
        except PYDICOM_FAILURES as error:
            raise CorruptImage(f"The DICOM header is invalid ({type(error).__name__}).") from None
    frame = rows * columns * samples * sample_bytes
    return frame * (1 if native else 3) + 2 * len(data) + rows * columns * gray_copies + allowance


def read_dataset(data: bytes, stop_before_pixels: bool = False) -> Dataset:
    """The dataset; with `stop_before_pixels`, only the tags before the pixel data."""
    has_preamble = data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == DICOM_MAGIC
    try:
        dataset = pydicom.dcmread(
            io.BytesIO(data), force=not has_preamble, stop_before_pixels=stop_before_pixels
        )
    except PYDICOM_FAILURES as error:
        raise CorruptImage(f"The DICOM file could not be read ({type(error).__name__}).") from None
    needed = ("Rows", "Columns") if stop_before_pixels else ("PixelData", "Rows", "Columns")
    if any(keyword not in dataset for keyword in needed):
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
    _check_pixel_count(int(dataset.Rows), int(dataset.Columns), max_pixels)


def _check_pixel_count(rows: int, columns: int, max_pixels: int) -> None:
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
        display = _apply_voi(stored, dataset)
    except PYDICOM_FAILURES as error:
        raise CorruptImage(
            f"The DICOM LUT or window is invalid ({type(error).__name__})."
        ) from None
    # MONOCHROME1 shows its lowest value as white: invert once, after the VOI, per the standard.
    return 255 - display if photometric == "MONOCHROME1" else display


def _apply_voi(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Modality LUT, then the VOI LUT first (it wins over a window when both are present), then
    window, else full range: a strip of rows at a time (`_map_strips`), every step per pixel."""

    def modality(rows: slice) -> np.ndarray:
        return apply_modality_lut(stored[rows], dataset)

    if dataset.get("VOILUTSequence"):
        look_up = _voi_lut(dataset)
        return _map_strips(stored, lambda rows: look_up(modality(rows)))
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        # The window's output range depends on bit depth, sign and rescale; let pydicom say it
        # by windowing the two infinities rather than restating its rules here.
        low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset)
        return _map_strips(
            stored,
            lambda rows: scale_to_uint8(
                apply_windowing(modality(rows), dataset), float(low), float(high)
            ),
        )
    if modality(slice(0, 1)).dtype == np.uint8:
        return modality(slice(None))  # 8-bit data is display-ready, as an 8-bit PNG is
    low, high = _strip_range(stored, modality)
    return _map_strips(stored, lambda rows: scale_to_uint8(modality(rows), low, high))


def _voi_lut(dataset: Dataset) -> Callable[[np.ndarray], np.ndarray]:
    """Table lookup, output scaled from the LUT's declared depth.

    Done here rather than by `pydicom.pixels.apply_voi`: pydicom 3.0.2 indexes an 8-bit LUT
    with a uint8 array, so a 4096-entry table wraps every 256 values.
    """
    item = dataset.VOILUTSequence[0]
    entries, first_mapped, bits = (int(value) for value in item.LUTDescriptor)
    table = _lut_table(
        item, entries or 65536, little_endian=dataset.original_encoding[1] is not False
    )

    def look_up(values: np.ndarray) -> np.ndarray:
        index = np.clip(np.rint(values) - first_mapped, 0, len(table) - 1).astype(np.intp)
        return scale_to_uint8(table[index], 0.0, float(2**bits - 1))

    return look_up


def _lut_table(item: Dataset, entries: int, little_endian: bool) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, bytes):  # VR OW: raw 16-bit words in the file's byte order
        return np.frombuffer(data, dtype="<u2" if little_endian else ">u2")[:entries]
    words = [data] if isinstance(data, int) else list(data)  # VR US: one value or many
    return np.asarray(words, dtype=np.float64)[:entries]


def _luminance_uint8(rgb: np.ndarray) -> np.ndarray:
    """pydicom hands YBR back as RGB; reduce to luma like Pillow's "L" conversion."""

    def luma(rows: slice) -> np.ndarray:
        return rgb[rows, ..., :3].astype(np.float64) @ LUMINANCE_WEIGHTS

    if rgb.dtype == np.uint8:
        return _map_strips(rgb, lambda rows: np.clip(np.rint(luma(rows)), 0, 255).astype(np.uint8))
    low, high = _strip_range(rgb, luma)
    return _map_strips(rgb, lambda rows: scale_to_uint8(luma(rows), low, high))


def _strip_bounds(pixels: np.ndarray) -> list[slice]:
    """Row ranges whose float64 copies take about `STRIP_BYTES` each."""
    height = pixels.shape[0]
    row_bytes = 8 * max(1, pixels[:1].size)
    rows = max(1, STRIP_BYTES // row_bytes)
    return [slice(top, min(top + rows, height)) for top in range(0, height, rows)]


def _map_strips(pixels: np.ndarray, convert: Callable[[slice], np.ndarray]) -> np.ndarray:
    """One (rows, columns) uint8 array filled strip by strip: every step here is per pixel, so
    it equals the whole image's conversion, without whole-image float64 copies (a 7,000 px
    16-bit film took gigabytes that way)."""
    display = np.empty(pixels.shape[:2], dtype=np.uint8)
    for rows in _strip_bounds(pixels):
        display[rows] = convert(rows)
    return display


def _strip_range(pixels: np.ndarray, values: Callable[[slice], np.ndarray]) -> tuple[float, float]:
    """The lowest and highest of `values` over every strip: the full-range window's ends."""
    extremes = [
        (float(strip.min()), float(strip.max())) for strip in map(values, _strip_bounds(pixels))
    ]
    return min(low for low, _ in extremes), max(high for _, high in extremes)


def scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255; a flat range gives a black image."""
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
