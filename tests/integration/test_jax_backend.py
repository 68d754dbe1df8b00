"""GPU hosts with JAX but no TensorFlow: the same worker, unchanged, with KERAS_BACKEND=jax."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.images import phantom_png
from tests.support.processes import RedisServer, WorkerProcess, wait_for_workers, worker_environment

pytestmark = pytest.mark.slow


def test_a_jax_worker_serves_the_same_model(tiny_model_dir: Path, tmp_path: Path, settings) -> None:
    from gateway.app import create_app

    redis = RedisServer(tmp_path / "redis").start()
    environment = worker_environment(redis.url, tiny_model_dir, KERAS_BACKEND="jax",
                                     JAX_PLATFORMS="cpu")  # fmt: skip
    worker = WorkerProcess(environment, tmp_path / "jax-worker.log", name="jax").start()
    try:
        wait_for_workers(redis.client(), 1, timeout_s=120)
        jax_settings = settings.model_copy(update={"redis_url": redis.url})
        with TestClient(create_app(jax_settings)) as api:
            job = api.post("/v1/jobs", files={"file": ("x.png", phantom_png(seed=4))}).json()
            deadline = time.monotonic() + 60
            while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                job = api.get(f"/v1/jobs/{job['job_id']}", params={"wait": 5}).json()
            assert job["status"] == "succeeded", worker.log_text()[-3000:]
            assert api.get(job["explanation"]["overlay_url"]).status_code == 200
        assert "'backend': 'jax'" in worker.log_text()
    finally:
        worker.stop()
        redis.stop()
