"""DICOM factories: plain functions that write real Part 10 files with pydicom.

Every file carries identifying tags (name, id, birth date, study date) so tests can prove none
of them survives intake.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
PATIENT = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-4417-2209",
    "PatientBirthDate": "19610214",
    "StudyDate": "20240117",
    "InstitutionName": "St Elsewhere General",
}
# Long enough that a chance match inside compressed image bytes is out of the question.
PATIENT_TRACES = [value.encode() for value in PATIENT.values()]


@dataclass
class DicomSpec:
    pixels: np.ndarray  # stored values, uint8 or uint16
    photometric: str = "MONOCHROME2"
    bits_stored: int | None = None
    window: tuple[float, float] | None = None  # centre, width
    voi_lut: tuple[int, int, list[int]] | None = None  # first mapped, bits, entries
    rescale: tuple[float, float] | None = None  # slope, intercept
    extra: dict[str, object] = field(default_factory=dict)


def dicom_file(spec: DicomSpec, preamble: bool = True) -> bytes:
    dataset = _base_dataset(ExplicitVRLittleEndian)
    _set_pixels(dataset, spec)
    if spec.window:
        dataset.WindowCenter, dataset.WindowWidth = spec.window
    if spec.voi_lut:
        dataset.VOILUTSequence = [_lut_item(*spec.voi_lut)]
    if spec.rescale:
        dataset.RescaleSlope, dataset.RescaleIntercept = spec.rescale
    for keyword, value in spec.extra.items():
        setattr(dataset, keyword, value)
    return _write(dataset, preamble)


def encapsulated_file(syntax: UID, frame: bytes, rows: int, columns: int, bits: int = 8) -> bytes:
    """A compressed-syntax file: `frame` is the codestream (real or dummy) of its one frame."""
    dataset = _base_dataset(syntax)
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated = 8 if bits <= 8 else 16
    dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = bits, bits - 1, 0
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    return _write(dataset, preamble=True)


def _base_dataset(syntax: UID) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = (
        DX_FOR_PRESENTATION,
        meta.MediaStorageSOPInstanceUID,
    )
    dataset.Modality = "DX"
    for keyword, value in PATIENT.items():
        setattr(dataset, keyword, value)
    return dataset


def _set_pixels(dataset: Dataset, spec: DicomSpec) -> None:
    """(rows, columns) grayscale, (rows, columns, 3) RGB, or (frames, rows, columns)."""
    pixels = spec.pixels
    allocated = 8 if pixels.dtype == np.uint8 else 16
    stored = spec.bits_stored or allocated
    colour = spec.photometric == "RGB"
    if colour:
        dataset.Rows, dataset.Columns = pixels.shape[:2]
        dataset.SamplesPerPixel, dataset.PlanarConfiguration = 3, 0
    else:
        dataset.Rows, dataset.Columns = pixels.shape[-2:]
        dataset.SamplesPerPixel = 1
        if pixels.ndim == 3:
            dataset.NumberOfFrames = pixels.shape[0]
    dataset.PhotometricInterpretation = spec.photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = allocated, stored, stored - 1
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(f"<u{allocated // 8}").tobytes()


def _lut_item(first_mapped: int, bits: int, entries: list[int]) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(entries), first_mapped, bits]
    item.add_new(0x00283006, "US", entries)  # LUT Data
    return item


def _write(dataset: FileDataset, preamble: bool) -> bytes:
    buffer = io.BytesIO()
    if preamble:
        dataset.save_as(buffer, enforce_file_format=True)
    else:
        # A bare dataset: no preamble, no `DICM`, no file meta, as some older archives export.
        dataset.preamble = None
        dataset.file_meta = FileMetaDataset()
        dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def ramp(height: int = 96, width: int = 80, top: int = 255) -> np.ndarray:
    """A horizontal gradient with vertical texture: every value differs, so mistakes show."""
    row = np.linspace(0, top, width)
    texture = np.linspace(0, top * 0.1, height)[:, None]
    return np.clip(row[None, :] * 0.9 + texture, 0, top)
