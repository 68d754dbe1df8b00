"""A finished job as DICOM, for the PACS its film came from: a Secondary Capture of the Grad-CAM
overlay and a Comprehensive SR following TID 1500 (IHE AI Results).

Both go into the source study as new series (Study Instance UID, patient and study modules
copied from the source header, `shared.dicom_header`), `VerificationFlag` UNVERIFIED, with
this service as Contributing Equipment. Their UIDs are derived from the job id and the source
instance, so building them again (another `GET`, a delivery retry) gives the same instances:
a PACS that receives one twice keeps one copy, never two conflicting ones.

Built on demand from what the job keeps (`results_as_dicom`), never stored: the identifiers
they carry live only in the job's `dicom_header` blob, with its TTL. Nothing here logs.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from shared.geometry import Placement
from shared.overlay import film_overlay
from shared.schemas import Job, Result

SERVICE = "pneumo-triage"
SERVICE_VERSION = "0.1.0"
DEMONSTRATION_NOTE = "demonstration model — not for diagnosis"
SC_SERIES_NUMBER, SR_SERIES_NUMBER = 9901, 9902
UTF8 = "ISO_IR 192"  # the demonstration note's dash, and any name the source carried

PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
# Concepts DICOM has no code for live in a private scheme (designators starting 99 are ours).
LOCAL_SCHEME = "99PNEUMO"
IN_DISTRIBUTION = Code("in-distribution", LOCAL_SCHEME, "Image resembles training data")
OOD_SCORE = Code("ood-score", LOCAL_SCHEME, "Out-of-distribution score")
MODEL_STATUS = Code("model-status", LOCAL_SCHEME, "Model status")
DEMONSTRATION = Code("demonstration", LOCAL_SCHEME, "Demonstration model, not for diagnosis")

# Patient and General Study modules, copied as the source has them so the PACS files the
# results with the film.
COPIED_FROM_SOURCE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence",
    "PatientIdentityRemoved", "DeidentificationMethod", "StudyInstanceUID", "StudyDate",
    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "IssuerOfAccessionNumberSequence",
)  # fmt: skip


# What highdicom reads from the source; type 2 (may be empty), so a film may lack them.
TYPE2_READ = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


@dataclass(frozen=True)
class Pictures:
    """What the overlay is drawn from: the display copy (uint8 grayscale), the explanation map
    and where the model input came from on the film (`shared.geometry`)."""

    display: np.ndarray
    cam: np.ndarray
    placement: Placement


@dataclass(frozen=True)
class DicomResults:
    structured_report: bytes  # Part 10 file
    secondary_capture: bytes


def results_as_dicom(source: Dataset, job: Job, pictures: Pictures) -> DicomResults:
    """Both objects for a succeeded job whose film came with `source` (its header)."""
    if job.result is None:
        raise ValueError("Only a succeeded job has results to put in DICOM.")
    source = with_type2_present(source)
    capture = secondary_capture(source, job, pictures)
    report = structured_report(source, job)
    return DicomResults(part10(report), part10(capture))


def with_type2_present(source: Dataset) -> Dataset:
    """A copy of `source` with the patient and study attributes highdicom reads present, empty
    where the sender left them out (type 2: they may be absent from a film, but not from ours)."""
    complete = copy.deepcopy(source)
    for keyword in TYPE2_READ:
        if keyword not in complete:
            setattr(complete, keyword, None)
    return complete


def derived_uid(job: Job, source: Dataset, role: str) -> str:
    """The same UID for the same job, source instance and role, whoever builds it."""
    return str(generate_uid(entropy_srcs=[job.job_id, str(source.SOPInstanceUID), role]))


def overlay_at_film_size(source: Dataset, pictures: Pictures) -> np.ndarray:
    """The overlay at the film's own rows and columns: the display copy (its long side capped,
    `Settings.display_max_side`) brought back to the film's size, the map drawn on it."""
    shape = (int(source.Rows), int(source.Columns))
    film = pictures.display
    if film.shape != shape:
        resized = Image.fromarray(film).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        film = np.asarray(resized, dtype=np.uint8)
    return film_overlay(film, pictures.cam, pictures.placement)


def secondary_capture(source: Dataset, job: Job, pictures: Pictures) -> Dataset:
    result = _result(job)
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=overlay_at_film_size(source, pictures),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        # highdicom wants an orientation it can check; the source's own (any, or none) is
        # copied over it below, since the capture has the film's geometry.
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=("L", "F"),
        series_instance_uid=derived_uid(job, source, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid(job, source, "sc"),
        instance_number=1,
        manufacturer=SERVICE,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=[_equipment(result, "Grad-CAM overlay")],
    )
    capture.SeriesDescription = "AI pneumonia triage: Grad-CAM overlay"
    capture.ImageComments = summary(result)[:10240]
    capture.BurnedInAnnotation = "NO"
    for keyword in ("PatientOrientation", "Laterality"):  # the film's, or empty (type 2C)
        setattr(capture, keyword, source.get(keyword) or None)
    capture.SourceImageSequence = [_reference(source)]
    return _finish(capture, source, job)


def structured_report(source: Dataset, job: Job) -> Dataset:
    result = _result(job)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(job, source, "device"), name=SERVICE, manufacturer_name=SERVICE,
        model_name=result.model.name,
    )  # fmt: skip
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device)
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(job, source, "finding"), identifier="Pneumonia finding"
        ),
        finding_type=PNEUMONIA,
        algorithm_id=_algorithm(result),
        measurements=_measurements(result),
        qualitative_evaluations=_evaluations(result),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    report = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=PLAIN_CHEST_XRAY,
            imaging_measurements=[group],
            title=codes.DCM.ImagingMeasurementReport,
        ),
        series_instance_uid=derived_uid(job, source, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(job, source, "sr"),
        instance_number=1,
        manufacturer=SERVICE,
        is_complete=True,
        is_final=False,
        is_verified=False,
        contributing_equipment=[_equipment(result, "TID 1500 report")],
    )
    report.SeriesDescription = "AI pneumonia triage: report"
    return _finish(report, source, job)


def summary(result: Result) -> str:
    """One line a viewer can show: the answer, its numbers, and what to make of it."""
    parts = [
        f"{result.label} (P(pneumonia) {result.probability:.3f}, threshold {result.threshold:.3f})",
        f"model {result.model.name} {result.model.version}",
    ]
    if not result.reliable:
        parts.insert(0, "OUT OF DISTRIBUTION: no reliable answer")
    if result.model.synthetic:
        parts.append(DEMONSTRATION_NOTE)
    return "; ".join(parts)


def part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _result(job: Job) -> Result:
    if job.result is None:
        raise ValueError("Only a succeeded job has results to put in DICOM.")
    return job.result


def _measurements(result: Result) -> list[hd.sr.Measurement]:
    algorithm = _algorithm(result)
    values = [(codes.DCM.Probability, result.probability), (codes.DCM.ThresholdValue,
                                                            result.threshold)]  # fmt: skip
    if result.ood is not None:
        values.append((OOD_SCORE, result.ood.score))
    return [
        hd.sr.Measurement(
            name=name, value=float(value), unit=codes.UCUM.NoUnits, algorithm_id=algorithm
        )  # fmt: skip
        for name, value in values
    ]


def _evaluations(result: Result) -> list[hd.sr.QualitativeEvaluation]:
    present = result.label == "PNEUMONIA"
    evaluations = [
        hd.sr.QualitativeEvaluation(PNEUMONIA, codes.SCT.Present if present else codes.SCT.Absent)
    ]
    if result.ood is not None:
        resembles = codes.SCT.No if result.ood.flagged else codes.SCT.Yes
        evaluations.append(hd.sr.QualitativeEvaluation(IN_DISTRIBUTION, resembles))
    if result.model.synthetic:
        evaluations.append(hd.sr.QualitativeEvaluation(MODEL_STATUS, DEMONSTRATION))
    return evaluations


def _algorithm(result: Result) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=result.model.name,
        version=result.model.version,
        parameters=[f"sha256={result.model.sha256}"],
    )


def _equipment(result: Result, made: str) -> hd.ContributingEquipment:
    description = f"{made} by {SERVICE} from model {result.model.name} {result.model.version}"
    if result.model.synthetic:
        description += f" ({DEMONSTRATION_NOTE})"
    return hd.ContributingEquipment(
        manufacturer=SERVICE,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=result.model.name[:64],
        software_versions=[SERVICE_VERSION, result.model.version[:64]],
        contribution_description=description,
    )


def _local_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = f"{SERVICE} result concepts"
    item.CodingSchemeResponsibleOrganization = SERVICE
    return item


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item


def _finish(dataset: Dataset, source: Dataset, job: Job) -> Dataset:
    """The source's patient and study, UTF-8, and times from when the job finished."""
    for keyword in COPIED_FROM_SOURCE:
        if keyword in source:
            dataset[keyword] = source[keyword]
    dataset.SpecificCharacterSet = UTF8
    dataset.CodingSchemeIdentificationSequence = [_local_scheme()]
    finished = job.finished_at or job.created_at
    for prefix in ("Content", "Series", "InstanceCreation"):
        setattr(dataset, f"{prefix}Date", finished.strftime("%Y%m%d"))
        setattr(dataset, f"{prefix}Time", finished.strftime("%H%M%S"))
    return dataset
