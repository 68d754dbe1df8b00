"""GPU hosts with JAX but no TensorFlow: the same worker, unchanged, with KERAS_BACKEND=jax, and
the same answers as TensorFlow's from the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.backend_outputs import MAX_BATCH
from tests.support.images import phantom_png
from tests.support.phantom_model import phantom_set
from tests.support.processes import (
    REPO_ROOT,
    RedisServer,
    WorkerProcess,
    wait_for_workers,
    worker_environment,
)

pytestmark = pytest.mark.slow
BACKENDS = ("tensorflow", "jax")


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
            for _ in range(12):  # long polls of up to 5 s each
                if job["status"] in ("succeeded", "failed"):
                    break
                job = api.get(f"/v1/jobs/{job['job_id']}", params={"wait": 5}).json()
            assert job["status"] == "succeeded", worker.log_text()[-3000:]
            assert api.get(job["explanation"]["overlay_url"]).status_code == 200
        assert "'backend': 'jax'" in worker.log_text()
    finally:
        worker.stop()
        redis.stop()


@dataclass
class BackendOutputs:
    probabilities: np.ndarray  # (N,)
    maps: np.ndarray  # (N, methods, h, w)
    traces: dict[str, list[int | None]]


def spread_logits(model, images: np.ndarray) -> None:
    """An untrained model answers about 0.5 for every film, where any two backends would agree;
    rescaling its logit layer spreads these films' logits over about -3..3 instead."""
    logits = model.predict(images[..., None], verbose=0)[:, 0]
    layer = model.get_layer("head").get_layer("logit")
    kernel, bias = layer.get_weights()
    scale = 3.0 / max(float(np.abs(logits - logits.mean()).max()), 1e-9)
    layer.set_weights([kernel * scale, (bias - logits.mean()) * scale])


def fixed_weights_artifact(directory: Path, images: np.ndarray) -> Path:
    import keras

    from shared.imaging import PreprocessParams
    from shared.model_card import ModelCard
    from worker.model.architecture import Architecture, build_classifier
    from worker.model.artifact import save_artifact

    keras.utils.set_random_seed(7)
    model = build_classifier(Architecture(image_size=64, block_filters=(8, 16, 32), dense_units=16))
    spread_logits(model, images)
    card = ModelCard(name="backend-comparison", version="0.0.1", synthetic=True,
                     preprocessing=PreprocessParams(image_size=64))  # fmt: skip
    save_artifact(model, card, directory)
    return directory


def outputs_of(backend: str, model_dir: Path, images_path: Path, out_dir: Path) -> BackendOutputs:
    out_dir.mkdir()
    command = [sys.executable, "-m", "tests.support.backend_outputs",
               str(model_dir), str(images_path), str(out_dir)]  # fmt: skip
    environment = os.environ | {"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    finished = subprocess.run(command, env=environment, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    with np.load(out_dir / "outputs.npz") as saved:
        probabilities, maps = saved["probabilities"], saved["maps"]
    return BackendOutputs(probabilities, maps, json.loads((out_dir / "traces.json").read_text()))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BackendOutputs]:
    """Each backend's answers for the same films from the same saved weights, each computed
    in a process of its own (KERAS_BACKEND is read when keras is imported)."""
    directory = tmp_path_factory.mktemp("backends")
    images = phantom_set(10, seed=5).images  # 10 films: chunks of 4, 4 and 2
    np.save(directory / "images.npy", images)
    model_dir = fixed_weights_artifact(directory / "model", images)
    return {
        backend: outputs_of(backend, model_dir, directory / "images.npy", directory / backend)
        for backend in BACKENDS
    }


def test_jax_and_tensorflow_agree_on_the_same_weights(outputs) -> None:
    """float32 on both, with different convolution kernels and summation orders: measured
    apart by at most 3e-6 (probabilities) and 4e-6 (maps, each normalised to a peak of 1) on
    an AVX-512 Intel Xeon. The tolerances leave margins of 30 and 250 for other CPUs' kernels,
    and still catch a map or a probability that differs for a reason."""
    tensorflow, jax = outputs["tensorflow"], outputs["jax"]
    assert np.ptp(tensorflow.probabilities) > 0.5  # the weights do tell these films apart
    np.testing.assert_allclose(jax.probabilities, tensorflow.probabilities, atol=1e-4)
    assert tensorflow.maps.max() > 0.99  # normalised maps, not all zero
    np.testing.assert_allclose(jax.maps, tensorflow.maps, atol=1e-3)


def test_jax_warm_up_compiles_each_bucket_once_and_nothing_after(outputs) -> None:
    """JAX compiles one program per batch shape: the warm-up compiles every power of two up to
    the largest batch, and predicting every size after it (padded to those) compiles none."""
    buckets = [1, 2, 4]
    assert buckets[-1] == MAX_BATCH
    assert outputs["jax"].traces == {"after_warm_up": buckets, "after_every_size": buckets}
    assert outputs["tensorflow"].traces == {"after_warm_up": [None], "after_every_size": [None]}
