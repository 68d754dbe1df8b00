"""A CR instance with a patient and a study, as a PACS holds it, and what the tests check the
service's DICOM results against. Orthanc and the delivery process: `bench.orthanc`."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from shared.schemas import Job, JobStatus, ModelInfo, OodResult, Result

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
PATIENT_NAME, PATIENT_ID = "Okafor^Adaeze", "MRN-99731-5528"
# Long enough that a chance match inside image bytes is out of the question.
PATIENT_TRACES = (PATIENT_NAME.encode(), PATIENT_ID.encode(), b"Okafor")


def cr_instance(pixels: np.ndarray, study_uid: str | None = None) -> FileDataset:
    """A Computed Radiography instance of `pixels` (uint16, MONOCHROME2, 12 bits stored)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = CR_STORAGE, meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = study_uid or generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.PatientName, dataset.PatientID = PATIENT_NAME, PATIENT_ID
    dataset.PatientBirthDate, dataset.PatientSex = "19580302", "F"
    dataset.StudyDate, dataset.StudyTime, dataset.AccessionNumber = "20260105", "093000", "A7731"
    dataset.StudyID, dataset.ReferringPhysicianName, dataset.Modality = "S1", "", "CR"
    dataset.SeriesNumber, dataset.InstanceNumber = 1, 1
    dataset.PatientOrientation, dataset.BodyPartExamined = ["L", "F"], "CHEST"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    return dataset


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def succeeded_job(label: str = "PNEUMONIA", synthetic: bool = True, flagged: bool = False) -> Job:
    now = datetime.now(UTC)
    probability = 0.87 if label == "PNEUMONIA" else 0.12
    return Job(
        job_id="5b0c1f4e-8d0e-4a51-9a43-7c55f0b2d001",
        status=JobStatus.succeeded,
        created_at=now,
        finished_at=now,
        expires_at=now + timedelta(hours=1),
        result=Result(
            assessment="out_of_distribution" if flagged else "in_distribution",
            label=label,  # type: ignore[arg-type]
            probability=probability,
            confidence=max(probability, 1 - probability),
            threshold=0.41,
            ood=OodResult(score=7.5 if flagged else 1.5, threshold=4.0, flagged=flagged),
            model=ModelInfo(
                name="demo-cnn",
                version="2026.12",
                sha256="c0ffee" * 10 + "abcd",
                synthetic=synthetic,
            ),  # fmt: skip
        ),
    )


def content_items(dataset: Dataset) -> list[Dataset]:
    """Every content item of an SR, depth first."""
    found = []
    for item in dataset.get("ContentSequence", []):
        found.append(item)
        found.extend(content_items(item))
    return found


def coded_answer(report: Dataset, code_value: str) -> str | None:
    """The code meaning an SR's CODE item named `code_value` answers with."""
    for item in content_items(report):
        name = item.get("ConceptNameCodeSequence")
        if item.get("ValueType") == "CODE" and name and name[0].CodeValue == code_value:
            return str(item.ConceptCodeSequence[0].CodeMeaning)
    return None


def measured(report: Dataset, code_value: str) -> float | None:
    for item in content_items(report):
        name = item.get("ConceptNameCodeSequence")
        if item.get("ValueType") == "NUM" and name and name[0].CodeValue == code_value:
            return float(item.MeasuredValueSequence[0].NumericValue)
    return None
