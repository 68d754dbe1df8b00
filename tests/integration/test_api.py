"""End to end through the real gateway app, a real Redis and a real Celery worker process."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.images import declared_huge_png, encode, phantom, phantom_jpeg, phantom_png

pytestmark = pytest.mark.slow


def submit(api: TestClient, data: bytes, name: str = "scan.png", **form: str) -> dict:
    response = api.post("/v1/jobs", files={"file": (name, data)}, data=form)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['job_id']}"
    assert response.headers["Retry-After"]
    return response.json()


def wait(api: TestClient, job_id: str, seconds: float = 30) -> dict:
    response = api.get(f"/v1/jobs/{job_id}", params={"wait": seconds})
    assert response.status_code == 200
    return response.json()


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_submit_poll_and_fetch_pictures(api: TestClient) -> None:
    job = submit(api, phantom_png(seed=21))
    assert job["status"] == "queued"
    done = wait(api, job["job_id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["label"] in ("NORMAL", "PNEUMONIA")
    assert 0.0 <= result["probability"] <= 1.0
    expected_confidence = result["probability"] if result["label"] == "PNEUMONIA" else 1 - result[
        "probability"]  # fmt: skip
    assert result["confidence"] == pytest.approx(expected_confidence)
    assert result["model"]["synthetic"] is True and len(result["model"]["sha256"]) == 64
    explanation = done["explanation"]
    assert explanation["target"] == result["label"] and explanation["layer"] == "last_conv"
    # Drawn on the film (256 px), not on the 64 px model input; the heatmap is see-through
    # where the model saw nothing.
    for url, channels in ((explanation["overlay_url"], 3), (explanation["heatmap_url"], 4)):
        picture = api.get(url)
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert png_pixels(picture.content).shape == (256, 256, channels)
    assert set(done["timings_ms"]) >= {"decode", "model"}


def test_pictures_of_a_non_square_film_have_its_aspect_ratio(api: TestClient) -> None:
    """A 200 x 256 film: overlay, heatmap and the film copy all 200 x 256; input.png stays the
    model's square input."""
    film = phantom(seed=8, pneumonia=True).image[28:228]
    done = wait(api, submit(api, encode(Image.fromarray(film), "PNG"))["job_id"])
    assert done["status"] == "succeeded", done
    base = f"/v1/jobs/{done['job_id']}"
    for name in ("overlay.png", "heatmap.png", "film"):
        response = api.get(f"{base}/{name}")
        assert response.status_code == 200, (name, response.text)
        assert png_pixels(response.content).shape[:2] == film.shape
    assert api.get(f"{base}/film").headers["content-type"] == "image/jpeg"
    assert png_pixels(api.get(f"{base}/input.png").content).shape == (64, 64)


def test_jpeg_and_each_explanation_method(api: TestClient) -> None:
    for method in ("gradcam", "gradcam++", "eigengradcam"):
        done = wait(api, submit(api, phantom_jpeg(seed=5), "scan.jpg", method=method)["job_id"])
        assert done["status"] == "succeeded"
        assert done["explanation"]["method"] == method


def test_seed_compatible_predict(api: TestClient) -> None:
    response = api.post("/predict", files={"file": ("xray.png", phantom_png(seed=8))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] in ("Pneumonia", "Normal")
    assert 0.5 <= body["confidence"] <= 1.0
    assert body["gradcam_image"] == f"outputs/{body['job_id']}/gradcam.png"
    picture = api.get("/" + body["gradcam_image"])
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


def test_twenty_concurrent_submissions_get_twenty_distinct_heatmaps(api: TestClient) -> None:
    """The original project wrote every heatmap to one shared path; here each job owns its own."""
    images = [phantom_png(seed=100 + index, pneumonia=index % 2 == 0) for index in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(
            pool.map(lambda data: api.post("/predict", files={"file": ("x.png", data)}), images)
        )
    assert [reply.status_code for reply in replies] == [200] * 20
    paths = {reply.json()["gradcam_image"] for reply in replies}
    assert len(paths) == 20
    overlays = {api.get("/" + path).content for path in paths}
    assert len(overlays) == 20


def test_delete_erases_every_key(api: TestClient, redis_server) -> None:
    job_id = submit(api, phantom_png(seed=9))["job_id"]
    assert wait(api, job_id)["status"] == "succeeded"
    assert redis_server.client().keys(f"pneumo:*{job_id}*")
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert redis_server.client().keys(f"pneumo:*{job_id}*") == []
    assert api.get(f"/v1/jobs/{job_id}").status_code == 404
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 404


def stored_keys(redis_server) -> set[bytes]:
    """Our job keys plus the broker queue's length: what a rejected upload must not change."""
    client = redis_server.client()
    keys = {key for key in client.keys("pneumo:*") if key != b"pneumo:workers"}
    return keys | {f"queued={client.llen('pneumo')}".encode()}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 422, "empty_file"),
        (b"this is text, not an image", 415, "unsupported_format"),
        (phantom_jpeg(seed=2)[:1500], 422, "corrupt_image"),
        (phantom_png(seed=2, size=64)[:-40], 422, "corrupt_image"),
        ("one_pixel", 422, "image_too_small"),
        (declared_huge_png(), 413, "too_many_pixels"),
    ],
    ids=["empty", "text_named_png", "truncated_jpeg", "truncated_png", "1x1", "declares_30000px"],
)
def test_bad_uploads_get_clear_errors_and_store_nothing(
    api: TestClient, redis_server, payload, status: int, code: str
) -> None:
    if payload == "one_pixel":
        buffer = io.BytesIO()
        Image.new("L", (1, 1)).save(buffer, format="PNG")
        payload = buffer.getvalue()
    before = stored_keys(redis_server)
    for endpoint in ("/v1/jobs", "/predict"):
        response = api.post(endpoint, files={"file": ("scan.png", payload)})
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]
    assert stored_keys(redis_server) == before


def test_upload_over_the_limit_is_413(settings, worker, redis_server) -> None:
    from gateway.app import create_app

    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    before = stored_keys(redis_server)
    with TestClient(create_app(small)) as client:
        response = client.post("/v1/jobs", files={"file": ("big.png", phantom_png(seed=1))})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "upload_too_large"
        huge_body = b"\x89PNG\r\n\x1a\n" + bytes(200_000)
        response = client.post("/v1/jobs", files={"file": ("huge.png", huge_body)})
        assert response.status_code == 413
    assert stored_keys(redis_server) == before


def test_request_errors_use_the_error_shape(api: TestClient) -> None:
    cases = {
        ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000"): (404, "job_not_found"),
        ("GET", "/v1/jobs/not-a-job-id"): (404, "job_not_found"),
        ("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000/overlay.png"): (
            404,
            "job_not_found",
        ),
        ("POST", "/v1/jobs"): (422, "invalid_request"),
        ("GET", "/no/such/route"): (404, "not_found"),
    }
    for (method, path), (status, code) in cases.items():
        response = api.request(method, path)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["code"] == code
    unknown_method = api.post("/v1/jobs", files={"file": ("x.png", phantom_png(1))},
                              data={"method": "saliency"})  # fmt: skip
    assert unknown_method.status_code == 400


def test_operations_endpoints(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1
    models = api.get("/v1/models").json()["models"]
    assert models and models[0]["name"] == "tiny-test-model" and models[0]["synthetic"] is True
    metrics = api.get("/metrics").text
    assert "pneumo_jobs_submitted_total" in metrics and "pneumo_queue_depth" in metrics
    assert api.get("/docs").status_code == 200
    assert "/v1/jobs" in api.get("/openapi.json").json()["paths"]


def test_readiness_fails_without_workers(settings) -> None:
    from gateway.app import create_app

    lonely = settings.model_copy(update={"key_prefix": "nobody-home"})
    with TestClient(create_app(lonely)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and response.headers["Retry-After"]
