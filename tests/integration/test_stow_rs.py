"""STOW-RS (`POST /dicomweb/studies`) on the real app, Redis and worker: per-instance outcomes
in the standard response dataset, jobs that finish, the same refusals as the listener."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from shared.config import Settings
from shared.dicom_header import SOURCE_HEADER_BLOB, parse_source_header
from shared.dicom_results import part10
from tests.support.dicom_network import (
    CT_IMAGE,
    DX_FOR_PROCESSING,
    radiograph,
    related_body,
)
from tests.support.dicoms import PATIENT_TRACES
from tests.support.redis_values import values_by_key

pytestmark = pytest.mark.slow
REFERENCED, FAILED, RETRIEVE_URL, FAILURE_REASON = "00081199", "00081198", "00081190", "00081197"
INSTANCE_UID = "00081155"


def stow(api: TestClient, parts: Sequence[tuple[str, bytes]]):
    body, content_type = related_body(parts)
    return api.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})


def values(item: dict, tag: str) -> list:
    return item[tag]["Value"]


def test_each_instance_is_answered_on_its_own(
    api: TestClient, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    good, ct, corrupt = radiograph(seed=11), radiograph(CT_IMAGE), radiograph(seed=12)
    corrupt.PixelData = corrupt.PixelData[:100]
    with caplog.at_level(logging.DEBUG):
        answer = stow(api, [("application/dicom", part10(d)) for d in (good, ct, corrupt)])
    assert answer.status_code == 202 and answer.headers["content-type"] == "application/dicom+json"
    (stored,) = values(answer.json(), REFERENCED)
    assert values(stored, INSTANCE_UID) == [good.SOPInstanceUID]
    job_url = values(stored, RETRIEVE_URL)[0]
    assert job_url.startswith("http://testserver/v1/jobs/")
    failures = {values(item, INSTANCE_UID)[0]: values(item, FAILURE_REASON)[0]
                for item in values(answer.json(), FAILED)}  # fmt: skip
    assert failures == {ct.SOPInstanceUID: 0x0122, corrupt.SOPInstanceUID: 0xC000}
    job = api.get(job_url.removeprefix("http://testserver"), params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    client = redis_server.client()
    header = client.get(f"pneumo:blob:{job['job_id']}:{SOURCE_HEADER_BLOB}")
    assert parse_source_header(header).StudyInstanceUID == good.StudyInstanceUID
    for key, stored_values in values_by_key(client).items():
        if any(trace in value for trace in PATIENT_TRACES for value in (key, *stored_values)):
            assert key.decode().endswith(f":{SOURCE_HEADER_BLOB}"), key
    assert not any(trace.decode() in caplog.text for trace in PATIENT_TRACES)
    assert api.delete(f"/v1/jobs/{job['job_id']}").status_code == 204
    assert client.get(f"pneumo:blob:{job['job_id']}:{SOURCE_HEADER_BLOB}") is None


def test_all_taken_is_200_and_none_taken_is_409(api: TestClient) -> None:
    instances = [radiograph(seed=13), radiograph(DX_FOR_PROCESSING, seed=14)]
    answer = stow(api, [("application/dicom", part10(dataset)) for dataset in instances])
    assert answer.status_code == 200 and FAILED not in answer.json()
    job_urls = [values(item, RETRIEVE_URL)[0] for item in values(answer.json(), REFERENCED)]
    assert len(set(job_urls)) == 2
    refused = stow(api, [("text/plain", b"not an image"), ("application/dicom", b"DICM" * 64)])
    assert refused.status_code == 409 and REFERENCED not in refused.json()
    reasons = [values(item, FAILURE_REASON)[0] for item in values(refused.json(), FAILED)]
    assert reasons == [0xC000, 0xC000]
    for url in job_urls:
        assert api.delete(url.removeprefix("http://testserver")).status_code == 204


def test_a_study_scoped_request_takes_only_that_studys_instances(api: TestClient) -> None:
    study = "1.2.826.0.1.3680043.8.498.1"
    ours, other = radiograph(study=study, seed=17), radiograph(seed=18)
    parts = [("application/dicom", part10(dataset)) for dataset in (ours, other)]
    body, content_type = related_body(parts)
    answer = api.post(
        f"/dicomweb/studies/{study}", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 202
    taken = values(answer.json(), REFERENCED)
    assert [values(item, INSTANCE_UID)[0] for item in taken] == [ours.SOPInstanceUID]
    failed = [(values(item, INSTANCE_UID)[0], values(item, FAILURE_REASON)[0])
              for item in values(answer.json(), FAILED)]  # fmt: skip
    assert failed == [(other.SOPInstanceUID, 0x0110)]
    job_url = values(taken[0], RETRIEVE_URL)[0]
    assert api.delete(job_url.removeprefix("http://testserver")).status_code == 204


def test_requests_refused_whole(api: TestClient, settings: Settings) -> None:
    form = api.post("/dicomweb/studies", files={"file": ("a.dcm", part10(radiograph()))})
    assert (form.status_code, form.json()["error"]["code"]) == (415, "unsupported_content_type")
    empty_body, content_type = related_body([])
    empty = api.post(
        "/dicomweb/studies", content=empty_body, headers={"Content-Type": content_type}
    )
    assert (empty.status_code, empty.json()["error"]["code"]) == (422, "invalid_request")
    parked = settings.model_copy(update={"queue_name": "parked-stow", "max_queue_depth": 1})
    with TestClient(create_app(parked)) as parked_api:
        first = stow(parked_api, [("application/dicom", part10(radiograph(seed=15)))])
        full = stow(parked_api, [("application/dicom", part10(radiograph(seed=16)))])
        assert first.status_code == 200
        assert (full.status_code, full.json()["error"]["code"]) == (503, "queue_full")
        assert "Retry-After" in full.headers
        job_url = values(values(first.json(), REFERENCED)[0], RETRIEVE_URL)[0]
        assert parked_api.delete(job_url.removeprefix("http://testserver")).status_code == 204
