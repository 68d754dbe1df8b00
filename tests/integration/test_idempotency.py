"""A repeated submission gets the job it already made (Idempotency-Key; optional result dedupe).

Per draft-ietf-httpapi-idempotency-key-header: same key and content -> the same job, answered
like the original (202 with the job); same key, other content -> 422; the first request still
being stored -> 409.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from shared.config import Settings
from tests.support.images import phantom_png
from tests.support.processes import WorkerProcess

pytestmark = pytest.mark.slow


def post(client: TestClient, image: bytes, key: str | None = None, **form: str):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/jobs", files={"file": ("x.png", image)}, data=form, headers=headers)


def new_key() -> str:
    return f"retry-{uuid.uuid4()}"


def test_same_key_and_content_give_back_the_same_job(api: TestClient) -> None:
    key, image = new_key(), phantom_png(31)
    first = post(api, image, key)
    assert first.status_code == 202
    api.get(first.headers["Location"], params={"wait": 30})
    again = post(api, image, key)
    quoted = post(api, image, f'"{key}"')  # the draft's structured-field form
    for reply in (again, quoted):
        assert reply.status_code == 202
        assert reply.headers["Location"] == first.headers["Location"]
        assert reply.json()["job_id"] == first.json()["job_id"]
    assert again.json()["status"] == "succeeded"  # its state now, not a stale copy
    assert post(api, image).json()["job_id"] != first.json()["job_id"]  # no key: a new job


@pytest.mark.parametrize("change", ["image", "method"])
def test_same_key_with_other_content_is_422(api: TestClient, change: str) -> None:
    key = new_key()
    assert post(api, phantom_png(32), key).status_code == 202
    if change == "image":
        reply = post(api, phantom_png(33), key)
    else:
        reply = post(api, phantom_png(32), key, method="eigengradcam")
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "idempotency_key_reused"


def test_concurrent_duplicates_make_one_job(api: TestClient) -> None:
    key, image = new_key(), phantom_png(34)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: post(api, image, key), range(8)))
    assert {reply.status_code for reply in replies} <= {202, 409}
    job_ids = {reply.json()["job_id"] for reply in replies if reply.status_code == 202}
    assert len(job_ids) == 1
    for reply in replies:
        if reply.status_code == 409:
            assert reply.json()["error"]["code"] == "idempotency_key_in_flight"
            assert reply.headers["Retry-After"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\u00e9"])
def test_malformed_keys_are_400(api: TestClient, key: str) -> None:
    headers = {"Idempotency-Key": key.encode("latin-1")}
    reply = api.post("/v1/jobs", files={"file": ("x.png", phantom_png(35))}, headers=headers)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_idempotency_key"


def test_result_dedupe_reuses_a_finished_result_of_the_serving_model(
    settings: Settings, worker: WorkerProcess
) -> None:
    from gateway.app import create_app

    image = phantom_png(36)
    with TestClient(create_app(settings.model_copy(update={"dedupe_results": True}))) as client:
        first = post(client, image).json()
        done = client.get(f"/v1/jobs/{first['job_id']}", params={"wait": 30}).json()
        assert done["status"] == "succeeded"
        again = post(client, image)
        assert again.status_code == 202 and again.json()["job_id"] == first["job_id"]
        other_method = post(client, image, method="gradcam++").json()
        assert other_method["job_id"] != first["job_id"]
    with TestClient(create_app(settings)) as dedupe_off:
        assert post(dedupe_off, image).json()["job_id"] != first["job_id"]
