"""The source instance's header, kept for a job that came in over the DICOM network (the DIMSE
listener, STOW-RS), so its results can go back into the same study as DICOM objects.

It is a Part 10 file of every element but the bulk pixel data, stored as the job's blob
`SOURCE_HEADER_BLOB`: the job's TTL, erased by `DELETE /v1/jobs/{id}`, kept past the final
write (unlike the upload). It holds the patient's identifiers, so it goes nowhere else: never
into a log record, a message, an error or the broker (only the job id is queued). Jobs made
over HTTP keep no header at all (`shared.dicom`).
"""

from __future__ import annotations

import io
import warnings

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from shared.dicom import PYDICOM_FAILURES, looks_like_dicom, read_dataset
from shared.errors import CorruptImage, UnsupportedFormat

SOURCE_HEADER_BLOB = "dicom_header"
# Bulk data the results never need: the image itself, in any of its encodings.
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def source_header(data: bytes) -> bytes:
    """The Part 10 header of DICOM bytes `data`: every element but the pixel data, re-encoded
    as Explicit VR Little Endian (with the pixels gone, the source's compression no longer
    applies). Raises the intake's errors for anything that is not a readable DICOM image."""
    if not looks_like_dicom(data):
        raise UnsupportedFormat("DICOM network intake takes DICOM instances only.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(data, stop_before_pixels=True)
        for keyword in PIXEL_KEYWORDS:
            if keyword in dataset:
                del dataset[keyword]
        try:
            return _part10(dataset)
        except PYDICOM_FAILURES as error:
            raise CorruptImage(
                f"The DICOM header could not be re-encoded ({type(error).__name__})."
            ) from None


def parse_source_header(data: bytes) -> Dataset:
    """The header `source_header` made, as a dataset (file meta included)."""
    return pydicom.dcmread(io.BytesIO(data))


def _part10(dataset: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = dataset.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    dataset.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()
