"""Idempotency-Key on `/v1/batches` and `/predict` (as on /v1/jobs), and one `file` part only.

Against the real gateway app, a real Redis and the real worker process of tests/conftest.py.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.support.images import phantom_png

pytestmark = pytest.mark.slow


def new_key() -> str:
    return f"retry-{uuid.uuid4()}"


def post_batch(client: TestClient, images: list[bytes], key: str | None, method: str = "gradcam"):
    files = [("files", (f"x{index}.png", image)) for index, image in enumerate(images)]
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/batches", files=files, data={"method": method}, headers=headers)


def test_a_repeated_batch_with_its_key_gives_back_the_same_batch(api: TestClient) -> None:
    key, images = new_key(), [phantom_png(41), phantom_png(42)]
    first = post_batch(api, images, key)
    assert first.status_code == 202, first.text
    again = post_batch(api, images, key)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert post_batch(api, images, None).json()["batch_id"] != first.json()["batch_id"]


@pytest.mark.parametrize("change", ["order", "file", "method", "kind"])
def test_a_batch_key_reused_for_another_request_is_422(api: TestClient, change: str) -> None:
    key, images = new_key(), [phantom_png(43), phantom_png(44)]
    assert post_batch(api, images, key).status_code == 202
    if change == "kind":  # the same key for a single job
        response = api.post(
            "/v1/jobs", files={"file": ("x.png", images[0])}, headers={"Idempotency-Key": key}
        )
    else:
        other = {
            "order": (images[::-1], "gradcam"),
            "file": ([images[0], phantom_png(45)], "gradcam"),
            "method": (images, "eigengradcam"),
        }[change]
        response = post_batch(api, *other[:1], key, method=other[1])
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_refused_batch_leaves_its_key_free(api: TestClient) -> None:
    key = new_key()
    refused = post_batch(api, [phantom_png(46), b"not an image"], key)
    assert refused.status_code in (415, 422)
    assert post_batch(api, [phantom_png(46)], key).status_code == 202


def test_predict_honours_the_idempotency_key(api: TestClient) -> None:
    key, image = new_key(), phantom_png(47)
    headers = {"Idempotency-Key": key}
    first = api.post("/predict", files={"file": ("x.png", image)}, headers=headers)
    again = api.post("/predict", files={"file": ("x.png", image)}, headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json()["job_id"] == first.json()["job_id"]
    other = api.post("/predict", files={"file": ("x.png", phantom_png(48))}, headers=headers)
    assert other.status_code == 422


@pytest.mark.parametrize("path", ["/v1/jobs", "/predict"])
def test_more_than_one_file_part_is_400(api: TestClient, path: str) -> None:
    files = [("file", ("a.png", phantom_png(49))), ("file", ("b.png", phantom_png(50)))]
    response = api.post(path, files=files)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "duplicate_file_part"
