"""The DICOM network intake's pieces without a network: the kept header, the DICOM name of
each refusal, the SOP class rule, the multipart/related reader, the listener's start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import numpy as np
import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from gateway.dicom_intake import (
    ACCEPTED_SOP_CLASSES,
    Identity,
    Refused,
    Status,
    check_sop_class,
    identify,
)
from gateway.dicom_listener import DicomListener, listener_owner, refusal_status
from gateway.multipart_related import read_parts, related_boundary
from gateway.security import KeyRing
from shared.config import Settings
from shared.dicom_header import parse_source_header, source_header
from shared.errors import (
    AppError,
    CorruptImage,
    DecodeBusy,
    InvalidRequest,
    QueueFull,
    RateLimited,
    TooManyFiles,
    TooManyPixels,
    UnsupportedContentType,
    UnsupportedFormat,
    UnsupportedTransferSyntax,
)
from tests.support.dicoms import PATIENT_TRACES, DicomSpec, dicom_file, ramp

FILM = np.rint(ramp(64, 48)).astype(np.uint8)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("preamble", [True, False], ids=["part10", "bare"])
def test_the_kept_header_is_every_tag_but_the_pixels(preamble: bool) -> None:
    data = dicom_file(DicomSpec(FILM, extra={"AccessionNumber": "ACC-1"}), preamble)
    header = parse_source_header(source_header(data))
    assert "PixelData" not in header and header.AccessionNumber == "ACC-1"
    assert header.PatientName == "Doe^Jane" and header.Rows == 64
    assert header.file_meta.MediaStorageSOPInstanceUID == header.SOPInstanceUID
    assert len(source_header(data)) < len(data) - FILM.size + 1024


def test_a_header_is_kept_for_dicom_only() -> None:
    with pytest.raises(UnsupportedFormat):
        source_header(b"\x89PNG\r\n\x1a\n" + bytes(200))


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (QueueFull("x"), Status.OUT_OF_RESOURCES),
        (DecodeBusy("x"), Status.OUT_OF_RESOURCES),
        (RateLimited("x"), Status.OUT_OF_RESOURCES),
        (TooManyPixels("x"), Status.OUT_OF_RESOURCES),
        (CorruptImage("x"), Status.CANNOT_UNDERSTAND),
        (UnsupportedFormat("x"), Status.CANNOT_UNDERSTAND),
        (UnsupportedTransferSyntax("x"), Status.TRANSFER_SYNTAX_NOT_SUPPORTED),
    ],
    ids=lambda value: getattr(value, "code", None) or f"0x{int(value):04X}",
)
def test_each_refusal_has_its_dicom_status(error: AppError, status: Status) -> None:
    refused = Refused.from_error(error)
    assert refused.status is status and refused.comment == f"{error.code}: x"
    response = refusal_status(refused)
    assert response.Status == int(status) and len(response.ErrorComment) <= 64


def test_radiographs_only_and_of_the_negotiated_class() -> None:
    for sop_class in ACCEPTED_SOP_CLASSES:
        check_sop_class(Identity(sop_class, "1.2.3"), negotiated=sop_class)
    with pytest.raises(Refused) as other:
        check_sop_class(Identity(CT_IMAGE, "1.2.3"))
    assert other.value.status is Status.SOP_CLASS_NOT_SUPPORTED
    with pytest.raises(Refused) as mismatch:
        check_sop_class(Identity(ACCEPTED_SOP_CLASSES[0], "1.2.3"), negotiated=CT_IMAGE)
    assert mismatch.value.status is Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_an_instance_without_identity_is_not_understood_and_quotes_no_tag() -> None:
    data = dicom_file(DicomSpec(FILM))
    without_uid = data.replace(b"\x08\x00\x16\x00", b"\x08\x00\x17\x00", 1)  # SOPClassUID gone
    with pytest.raises(Refused) as caught:
        identify(without_uid)
    assert caught.value.status is Status.CANNOT_UNDERSTAND
    assert not any(trace.decode() in caught.value.comment for trace in PATIENT_TRACES)
    assert identify(data).sop_class == "1.2.840.10008.5.1.4.1.1.1.1"


async def chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def related(*parts: tuple[str, bytes], boundary: bytes = b"b0undary") -> bytes:
    encoded = [b"--%s\r\nContent-Type: %s\r\n\r\n%s\r\n" % (boundary, kind.encode(), data)
               for kind, data in parts]  # fmt: skip
    return b"".join(encoded) + b"--%s--\r\n" % boundary


def test_parts_are_read_in_order_and_cut_past_the_limit() -> None:
    body = related(("application/dicom", b"a" * 10), ("Application/DICOM", b"b" * 40))
    parts = asyncio.run(read_parts(chunks(body), b"b0undary", part_limit=20, max_parts=5))
    assert [part.content_type for part in parts] == ["application/dicom"] * 2
    assert parts[0].data == b"a" * 10 and not parts[0].cut(20)
    assert parts[1].data == b"b" * 21 and parts[1].cut(20) and parts[1].size == 40
    with pytest.raises(TooManyFiles):
        asyncio.run(read_parts(chunks(body), b"b0undary", part_limit=20, max_parts=1))
    with pytest.raises(InvalidRequest):
        asyncio.run(read_parts(chunks(b"--other\r\n" + body), b"b0undary", 20, 5))


@pytest.mark.parametrize(
    ("content_type", "failure"),
    [
        ('multipart/related; type="application/dicom"; boundary=abc', None),
        ("multipart/related; type=application/dicom; boundary=abc", None),
        ('multipart/form-data; boundary=abc', UnsupportedContentType),
        ('multipart/related; type="application/dicom+json"; boundary=abc', UnsupportedContentType),
        ('multipart/related; type="application/dicom"', InvalidRequest),
        (None, UnsupportedContentType),
    ],
)  # fmt: skip
def test_content_types(content_type: str | None, failure: type[AppError] | None) -> None:
    if failure is None:
        assert related_boundary(content_type, "application/dicom") == b"abc"
    else:
        with pytest.raises(failure):
            related_boundary(content_type, "application/dicom")


def test_an_open_listener_says_so_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.dicom_listener"):
        open_to_all = DicomListener(Settings(), "PNEUMO")
        listed = DicomListener(Settings(dicom_allowed_aets="ORTHANC,CR1"), "PNEUMO")
    warnings = [record for record in caplog.records if "ALLOWED_AETS" in record.getMessage()]
    assert len(warnings) == 1
    assert open_to_all.ae.require_calling_aet == []
    assert listed.ae.require_calling_aet == ["ORTHANC", "CR1"]
    for listener in (open_to_all, listed):
        listener.loop.close()


def test_the_listener_s_jobs_belong_to_the_named_key() -> None:
    """A keyed deployment: the key named by PNEUMO_DICOM_API_KEY_NAME sees the listener's jobs
    exactly as it sees its own uploads; no key named, no key sees them."""
    settings = Settings(api_keys="pacs:s3cret-pacs,viewer:s3cret-viewer", dicom_api_key_name="pacs")
    keys = KeyRing(settings.named_api_keys)
    pacs = keys.identify(Headers({"x-api-key": "s3cret-pacs"}), "10.0.0.1")
    viewer = keys.identify(Headers({"x-api-key": "s3cret-viewer"}), "10.0.0.2")
    assert pacs is not None and viewer is not None
    owner = listener_owner(settings)
    assert pacs.may_see(owner) and not viewer.may_see(owner)
    assert listener_owner(Settings(api_keys="pacs:s3cret-pacs")) is None
    with pytest.raises(ValidationError, match="names no key"):
        Settings(api_keys="pacs:s3cret-pacs", dicom_api_key_name="archive")
