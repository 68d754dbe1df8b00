"""POST /v1/batches and GET /v1/batches/{id}, through the real gateway app, Redis and worker."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.dicoms import DicomSpec, dicom_file, ramp
from tests.support.images import phantom_jpeg, phantom_png

pytestmark = pytest.mark.slow


def batch_files(*payloads: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (f"scan-{index}.bin", data)) for index, data in enumerate(payloads)]


def wait_for_batch(api: TestClient, batch_id: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        response = api.get(f"/v1/batches/{batch_id}")
        assert response.status_code == 200, response.text
        if response.json()["done"] or time.monotonic() > deadline:
            return response.json()
        assert response.headers["Retry-After"]
        time.sleep(0.1)


def stored_keys(redis_server) -> set[bytes]:
    """Job, blob and batch keys plus the queue length: what a refused batch must not change."""
    client = redis_server.client()
    keys = {key for key in client.keys("pneumo:*") if key != b"pneumo:workers"}
    return keys | {f"queued={client.llen('pneumo')}".encode()}


def sixteen_bit_dicom() -> bytes:
    pixels = (np.rint(ramp(128, 128)) * 16).astype(np.uint16)
    return dicom_file(DicomSpec(pixels, bits_stored=12, window=(2000, 3000)))


def test_a_batch_of_mixed_formats_runs_to_completion(api: TestClient) -> None:
    payloads = (phantom_png(seed=41), phantom_jpeg(seed=42), sixteen_bit_dicom())
    response = api.post(
        "/v1/batches", files=batch_files(*payloads), data={"method": "eigengradcam"}
    )
    assert response.status_code == 202, response.text
    created = response.json()
    assert set(created) == {"batch_id", "job_ids"} and len(set(created["job_ids"])) == 3
    assert response.headers["Location"] == f"/v1/batches/{created['batch_id']}"
    first = api.get(f"/v1/batches/{created['batch_id']}").json()
    assert sum(first["counts"].values()) == 3 and first["job_ids"] == created["job_ids"]

    batch = wait_for_batch(api, created["batch_id"])
    assert batch["done"] is True
    assert batch["counts"] == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "expired": 0}
    for job_id in created["job_ids"]:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["explanation"]["method"] == "eigengradcam"


def test_counts_follow_deleted_jobs(api: TestClient) -> None:
    created = api.post("/v1/batches", files=batch_files(phantom_png(51), phantom_png(52))).json()
    wait_for_batch(api, created["batch_id"])
    assert api.delete(f"/v1/jobs/{created['job_ids'][0]}").status_code == 204
    counts = api.get(f"/v1/batches/{created['batch_id']}").json()["counts"]
    assert counts["expired"] == 1 and counts["succeeded"] == 1


@pytest.mark.parametrize(
    ("bad_file", "status", "code"),
    [
        (b"a text file renamed scan.png", 415, "unsupported_format"),
        (phantom_jpeg(seed=3)[:1200], 422, "corrupt_image"),
        (b"", 422, "empty_file"),
    ],
    ids=["text", "truncated_jpeg", "empty"],
)
def test_one_bad_file_rejects_the_whole_batch_and_stores_nothing(
    api: TestClient, redis_server, bad_file: bytes, status: int, code: str
) -> None:
    before = stored_keys(redis_server)
    files = batch_files(phantom_png(seed=61), phantom_png(seed=62), bad_file, phantom_png(seed=63))
    response = api.post("/v1/batches", files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith("files[2]: ")
    assert stored_keys(redis_server) == before


def test_limits_on_count_and_size(settings, worker, redis_server) -> None:
    from gateway.app import create_app

    before = stored_keys(redis_server)
    small = settings.model_copy(update={"max_batch_files": 2, "max_batch_bytes": 20_000})
    with TestClient(create_app(small)) as client:
        three = batch_files(
            phantom_png(71, size=64), phantom_png(72, size=64), phantom_png(73, size=64)
        )
        response = client.post("/v1/batches", files=three)
        assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_files"
        big = batch_files(bytes(50_000), bytes(50_000))
        response = client.post("/v1/batches", files=big)
        assert (
            response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"
        )
        assert client.post("/v1/batches").status_code == 422  # no files at all
    assert stored_keys(redis_server) == before


def test_unknown_batch_is_404_in_the_error_shape(api: TestClient) -> None:
    response = api.get("/v1/batches/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "batch_not_found"
    assert "/v1/batches" in api.get("/openapi.json").json()["paths"]
