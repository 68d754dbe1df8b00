"""Tenants kept apart: with API keys on, a job (and a batch) belongs to the key that made it.

Against the real gateway app, a real Redis and the real worker process of tests/conftest.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from shared.config import Settings
from tests.support.images import phantom_png
from tests.support.processes import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

ALICE_KEY, BOB_KEY = "alice-key-5d1e2b7f9c", "bob-key-0a4c8e6d3b1f"
ALICE, BOB = {"X-API-Key": ALICE_KEY}, {"Authorization": f"Bearer {BOB_KEY}"}


@pytest.fixture()
def tenants(settings: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    from gateway.app import create_app

    keys = (f"alice:{ALICE_KEY}", f"bob:{BOB_KEY}")
    with TestClient(create_app(settings.model_copy(update={"api_keys": keys}))) as client:
        yield client


@pytest.fixture()
def alices_job(tenants: TestClient) -> str:
    reply = tenants.post("/v1/jobs", files={"file": ("x.png", phantom_png(31))}, headers=ALICE)
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    done = tenants.get(f"/v1/jobs/{job_id}", params={"wait": 30}, headers=ALICE).json()
    assert done["status"] == "succeeded", done
    return job_id


def job_routes(client: TestClient, job_id: str) -> list[tuple[str, str]]:
    """Every route the API documents for one job (pictures included, whatever they are named),
    plus a long poll and the seed's picture path; DELETE last."""
    paths = client.get("/openapi.json").json()["paths"]
    reads = [
        ("GET", path.replace("{job_id}", job_id).replace("{name}", name))
        for path, methods in paths.items()
        if path.startswith("/v1/jobs/{job_id}") and "get" in methods
        for name in (("overlay", "heatmap") if "{name}" in path else ("",))
    ]
    assert len(reads) >= 4, reads  # the job, overlay, heatmap, input, ...
    seed_picture = ("GET", f"/outputs/{job_id}/gradcam.png")
    return [
        *reads,
        ("GET", f"/v1/jobs/{job_id}?wait=5"),
        seed_picture,
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]


def test_another_key_is_told_the_job_does_not_exist_on_every_route(
    tenants: TestClient, alices_job: str
) -> None:
    never_was = str(uuid.uuid4())
    for (method, path), (_, unknown_path) in zip(
        job_routes(tenants, alices_job), job_routes(tenants, never_was), strict=True
    ):
        answer = tenants.request(method, path, headers=BOB)
        unknown = tenants.request(method, unknown_path, headers=BOB)
        assert answer.status_code == 404, (method, path, answer.status_code)
        # Word for word the answer for a job that never was, but for the id itself.
        assert answer.text.replace(alices_job, never_was) == unknown.text, path
    for method, path in job_routes(
        tenants, alices_job
    ):  # all still there for Alice; delete is last
        answer = tenants.request(method, path, headers=ALICE)
        if path.endswith(".dcm"):  # her PNG job has no DICOM results, and is told so
            assert (answer.status_code, answer.json()["error"]["code"]) == (
                404, "no_dicom_results",
            ), path  # fmt: skip
            continue
        expected = 204 if method == "DELETE" else 200
        assert answer.status_code == expected, path


def test_a_batch_belongs_to_its_key(tenants: TestClient) -> None:
    files = [("files", (f"{index}.png", phantom_png(40 + index))) for index in range(2)]
    created = tenants.post("/v1/batches", files=files, headers=ALICE)
    assert created.status_code == 202, created.text
    location = created.headers["Location"]
    assert tenants.get(location, headers=ALICE).status_code == 200
    refused = tenants.get(location, headers=BOB)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "batch_not_found"
    for job_id in created.json()["job_ids"]:
        assert tenants.get(f"/v1/jobs/{job_id}", headers=BOB).status_code == 404


def test_the_record_keeps_a_digest_of_the_key_and_no_answer_shows_it(
    tenants: TestClient, redis_server: RedisServer, alices_job: str
) -> None:
    record = redis_server.client().get(f"pneumo:job:{alices_job}")
    assert b'"owner":"' in record and ALICE_KEY.encode() not in record
    answer = tenants.get(f"/v1/jobs/{alices_job}", headers=ALICE)
    assert "owner" not in answer.json() and "owner" not in answer.text
    job_schema = tenants.get("/openapi.json").json()["components"]["schemas"]["Job"]
    assert "owner" not in job_schema["properties"]


def test_logs_and_metrics_name_the_key_never_show_it(
    tenants: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    reply = tenants.post("/v1/jobs", files={"file": ("x.png", phantom_png(32))}, headers=BOB)
    assert reply.status_code == 202
    assert f"{reply.json()['job_id']} submitted by bob" in caplog.text
    tenants.get("/v1/jobs", headers={"X-API-Key": "not-a-key"})
    metrics = tenants.get("/metrics", headers=ALICE).text
    assert 'pneumo_client_requests_total{client="bob",status="202"}' in metrics
    assert 'client="unauthenticated",status="401"' in metrics
    for text in (caplog.text, metrics):
        assert ALICE_KEY not in text and BOB_KEY not in text and "not-a-key" not in text


def test_keys_off_every_client_sees_every_job(api: TestClient) -> None:
    reply = api.post("/v1/jobs", files={"file": ("x.png", phantom_png(33))})
    other_client = {"X-API-Key": "ignored-when-keys-are-off"}
    assert api.get(reply.headers["Location"], headers=other_client).status_code == 200
