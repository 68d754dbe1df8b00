"""Decode once, render late: the gateway's model input reaches the model, pictures are drawn
on request. Real Redis, the real pipeline and the real gateway app; nothing of ours mocked."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from gateway.serving import ServingPreprocessing
from shared.handoff import pack_input, unpack_input, unpack_map
from shared.imaging import IntakeLimits, PreprocessParams, load_radiograph
from shared.store import AsyncStore, SyncStore, new_job
from tests.support.images import phantom_jpeg, phantom_png
from tests.support.processes import RedisServer

pytestmark = pytest.mark.slow
PREFIX = "handoff-test"  # apart from the session worker's keys, which would pick these jobs up


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path):
    from worker.model.runtime import ModelRuntime

    return ModelRuntime.from_directory(tiny_model_dir)


def seeded(redis_server: RedisServer, blobs: dict[str, bytes]) -> tuple[SyncStore, str]:
    store = SyncStore.from_url(redis_server.url, PREFIX, 3600)
    job = new_job(str(uuid.uuid4()), 3600)
    store.save([job], {job.job_id: blobs})
    return store, job.job_id


def test_the_worker_predicts_on_the_gateways_input_without_decoding(redis_server, runtime) -> None:
    from worker.serving.pipeline import process_jobs

    params = runtime.card.preprocessing
    pixels = load_radiograph(phantom_png(seed=3), params, IntakeLimits())
    # An upload no decoder accepts: the job can only succeed through the handed-over input.
    store, job_id = seeded(redis_server, {"upload": b"not an image",
                                          "input": pack_input(pixels, params)})  # fmt: skip
    assert process_jobs([job_id], store, runtime, IntakeLimits()).succeeded == [job_id]
    job = store.load_jobs([job_id])[0]
    expected = runtime.predict(pixels[None])[0]
    assert job is not None and job.result is not None
    assert job.result.probability == pytest.approx(expected.probability, abs=1e-6)
    assert "decode" not in job.timings_ms
    cam = unpack_map(store.load_blobs([job_id], "cam")[0] or b"")
    assert cam is not None and np.allclose(cam, expected.maps["gradcam"], atol=1e-6)


def test_an_input_made_for_another_preprocessing_is_ignored(redis_server, runtime) -> None:
    from worker.serving.pipeline import process_jobs

    params = runtime.card.preprocessing
    other = params.model_copy(update={"trim_borders": not params.trim_borders})
    upload = phantom_png(seed=4)
    size = params.image_size
    stale = pack_input(np.zeros((size, size), np.uint8), other)
    store, job_id = seeded(redis_server, {"upload": upload, "input": stale})
    assert process_jobs([job_id], store, runtime, IntakeLimits()).succeeded == [job_id]
    decoded = load_radiograph(upload, params, IntakeLimits())
    job = store.load_jobs([job_id])[0]
    assert job is not None and job.result is not None and "decode" in job.timings_ms
    expected = runtime.predict(decoded[None])[0]
    assert job.result.probability == pytest.approx(expected.probability, abs=1e-6)
    # The worker left the input it decoded, for the gateway's pictures.
    assert np.array_equal(unpack_input(store.load_blobs([job_id], "input")[0], params), decoded)


def test_the_gateway_decodes_once_and_the_answer_is_the_workers_own(
    api: TestClient, redis_server: RedisServer, runtime
) -> None:
    upload = phantom_jpeg(seed=8, size=1200)
    job_id = api.post("/v1/jobs", files={"file": ("scan.jpg", upload)}).json()["job_id"]
    done = api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    params = runtime.card.preprocessing
    stored_input = redis_server.client().get(f"pneumo:blob:{job_id}:input")
    decoded = load_radiograph(upload, params, IntakeLimits())
    assert np.array_equal(unpack_input(stored_input, params), decoded)
    expected = runtime.predict(decoded[None])[0]
    assert done["result"]["probability"] == pytest.approx(expected.probability, abs=1e-6)
    # Final: the upload (most of a job's memory) is gone; what the pictures need stays.
    client = redis_server.client()
    assert not client.exists(f"pneumo:blob:{job_id}:upload")
    assert client.exists(f"pneumo:blob:{job_id}:input", f"pneumo:blob:{job_id}:cam") == 2


def test_pictures_are_drawn_on_first_request_kept_and_deleted_with_the_job(
    api: TestClient, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    job_id = api.post("/v1/jobs", files={"file": ("scan.png", phantom_png(seed=9))}).json()[
        "job_id"
    ]
    assert api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()["status"] == "succeeded"
    overlay_key = f"pneumo:blob:{job_id}:overlay"
    assert not client.exists(overlay_key)  # the worker stored no picture
    first = api.get(f"/v1/jobs/{job_id}/overlay.png")
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert client.get(overlay_key) == first.content
    assert 0 < client.ttl(overlay_key) <= client.ttl(f"pneumo:job:{job_id}")
    assert api.get(f"/v1/jobs/{job_id}/overlay.png").content == first.content
    assert api.get(f"/outputs/{job_id}/gradcam.png").content == first.content
    assert api.get(f"/v1/jobs/{job_id}/input.png").status_code == 200
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not client.keys(f"pneumo:*{job_id}*")

    async def draw_after_delete() -> None:  # a picture finishing after the DELETE
        redis_client = aioredis.Redis.from_url(redis_server.url)
        await AsyncStore(redis_client, "pneumo", 3600).keep_blob(job_id, "overlay", b"late")
        await redis_client.aclose()

    asyncio.run(draw_after_delete())
    assert not client.exists(overlay_key)


def test_the_gateway_preprocesses_only_when_every_live_worker_agrees(
    redis_server: RedisServer,
) -> None:
    sync_store = SyncStore.from_url(redis_server.url, PREFIX, 3600)
    sync_store.client.delete(sync_store.keys.workers)
    small, large = PreprocessParams(image_size=64), PreprocessParams(image_size=128)

    def current() -> PreprocessParams | None:
        async def read() -> PreprocessParams | None:
            redis_client = aioredis.Redis.from_url(redis_server.url)
            store = AsyncStore(redis_client, PREFIX, 3600)
            try:
                return await ServingPreprocessing(heartbeat_s=1).current(store)
            finally:
                await redis_client.aclose()

        return asyncio.run(read())

    assert current() is None  # no worker: validate only, the worker will decode
    sync_store.heartbeat("a", {"preprocessing": small.model_dump()})
    sync_store.heartbeat("b", {"preprocessing": small.model_dump()})
    assert current() == small
    sync_store.heartbeat("c", {"preprocessing": large.model_dump()})  # a rolling upgrade
    assert current() is None
    stale = json.dumps({"time": time.time() - 3600, "model": {"preprocessing": {}}})
    sync_store.client.hset(sync_store.keys.workers, "c", stale)  # gone: its heartbeat is old
    assert current() == small
