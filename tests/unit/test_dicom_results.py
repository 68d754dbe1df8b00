"""The SR (TID 1500) and the Secondary Capture built from a job and its source header: in the
source study, new series, UNVERIFIED, saying what the job said; valid for dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from shared.dicom_results import DEMONSTRATION_NOTE, SERVICE, Pictures, results_as_dicom
from shared.geometry import Placement, Span
from tests.support.pacs import (
    PATIENT_ID,
    PATIENT_NAME,
    coded_answer,
    cr_instance,
    measured,
    read,
    succeeded_job,
)

WHOLE = Span(start=0.0, stop=1.0)


def pictures(rows: int, columns: int) -> Pictures:
    """A display copy at half the film's size and a map hot in its top-left quarter."""
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[:4, :4] = 1.0
    display = np.full((rows // 2, columns // 2), 100, dtype=np.uint8)
    return Pictures(display, cam, Placement(crop_rows=WHOLE, crop_columns=WHOLE,
                                            input_rows=WHOLE, input_columns=WHOLE))  # fmt: skip


@pytest.fixture(scope="module")
def source():
    header = cr_instance(np.zeros((300, 240), dtype=np.uint16))
    del header.PixelData  # what the job keeps (shared.dicom_header)
    return header


def test_both_go_into_the_source_study_as_new_unverified_series(source) -> None:
    results = results_as_dicom(source, succeeded_job(), pictures(300, 240))
    report, capture = read(results.structured_report), read(results.secondary_capture)
    for made in (report, capture):
        assert made.StudyInstanceUID == source.StudyInstanceUID
        assert (str(made.PatientName), made.PatientID) == (PATIENT_NAME, PATIENT_ID)
        assert made.AccessionNumber == source.AccessionNumber
        assert made.SeriesInstanceUID != source.SeriesInstanceUID
        assert made.ContributingEquipmentSequence[0].Manufacturer == SERVICE
    assert report.SeriesInstanceUID != capture.SeriesInstanceUID
    assert (report.VerificationFlag, report.CompletionFlag) == ("UNVERIFIED", "COMPLETE")
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_the_capture_is_the_overlay_at_the_films_size(source) -> None:
    capture = read(results_as_dicom(source, succeeded_job(), pictures(300, 240)).secondary_capture)
    assert (capture.Rows, capture.Columns, capture.PhotometricInterpretation) == (300, 240, "RGB")
    pixels = capture.pixel_array
    hot, cold = pixels[20:120, 20:90].mean(axis=(0, 1)), pixels[200:, 150:].mean(axis=(0, 1))
    assert hot[0] > hot[2] + 50  # red where the map is high (jet)
    assert cold[2] > cold[0] + 30  # blue where it is low
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


@pytest.mark.parametrize("label, answer", [("PNEUMONIA", "Present"), ("NORMAL", "Absent")])
def test_the_report_says_what_the_job_said(source, label: str, answer: str) -> None:
    job = succeeded_job(label)
    report = read(results_as_dicom(source, job, pictures(300, 240)).structured_report)
    assert job.result is not None
    assert coded_answer(report, "233604007") == answer  # Pneumonia, SNOMED CT
    assert measured(report, "122157") == pytest.approx(job.result.probability)  # Probability
    assert measured(report, "122411") == pytest.approx(job.result.threshold)  # Threshold Value
    assert coded_answer(report, "in-distribution") == "Yes"
    text = report.to_json()
    assert job.result.model.sha256 in text and job.result.model.version in text


def test_the_demonstration_note_only_for_a_synthetic_model(source) -> None:
    def note_in(synthetic: bool) -> bool:
        job = succeeded_job(synthetic=synthetic)
        built = results_as_dicom(source, job, pictures(300, 240))
        report, capture = read(built.structured_report), read(built.secondary_capture)
        in_report = coded_answer(report, "model-status") is not None
        assert in_report == (DEMONSTRATION_NOTE in capture.ImageComments)
        return in_report

    assert note_in(True) and not note_in(False)


def test_an_out_of_distribution_image_is_said_so(source) -> None:
    built = results_as_dicom(source, succeeded_job(flagged=True), pictures(300, 240))
    assert coded_answer(read(built.structured_report), "in-distribution") == "No"
    assert read(built.secondary_capture).ImageComments.startswith("OUT OF DISTRIBUTION")


def test_building_again_gives_the_same_instances(source) -> None:
    first = results_as_dicom(source, succeeded_job(), pictures(300, 240))
    again = results_as_dicom(source, succeeded_job(), pictures(300, 240))
    for name in ("structured_report", "secondary_capture"):
        one, two = read(getattr(first, name)), read(getattr(again, name))
        assert (one.SOPInstanceUID, one.SeriesInstanceUID) == (
            two.SOPInstanceUID, two.SeriesInstanceUID)  # fmt: skip


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing: make pacs")
def test_dciodvfy_finds_no_errors(source, tmp_path: Path) -> None:
    built = results_as_dicom(source, succeeded_job(flagged=True), pictures(300, 240))
    for name, data in (("sr.dcm", built.structured_report), ("sc.dcm", built.secondary_capture)):
        (tmp_path / name).write_bytes(data)
        checked = subprocess.run(["dciodvfy", str(tmp_path / name)], capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
        assert errors == [], f"{name}: {errors}"


def test_a_film_without_the_optional_patient_and_study_tags_still_gets_results(source) -> None:
    sparse = source.copy()
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName", "PatientOrientation"):  # fmt: skip
        del sparse[keyword]
    built = results_as_dicom(sparse, succeeded_job(), pictures(300, 240))
    report = read(built.structured_report)
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert report.PatientBirthDate == "" and coded_answer(report, "233604007") == "Present"
    assert "PatientBirthDate" not in sparse  # the caller's header is left as it was
