"""Shared fixtures: a real redis-server, a tiny model artifact, a real Celery worker process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.processes import RedisServer, WorkerProcess, wait_for_workers, worker_environment
from shared.config import Settings

TINY_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained but complete artifact: fast to load, exercises every code path."""
    from shared.imaging import PreprocessParams
    from shared.model_card import ModelCard
    from worker.model.architecture import Architecture, build_classifier
    from worker.model.artifact import save_artifact

    directory = tmp_path_factory.mktemp("tiny-model")
    arch = Architecture(image_size=TINY_IMAGE_SIZE, block_filters=(8, 16, 32, 64), dense_units=16)
    card = ModelCard(
        name="tiny-test-model", version="0.0.1", synthetic=True,
        preprocessing=PreprocessParams(image_size=TINY_IMAGE_SIZE), architecture=asdict(arch),
    )  # fmt: skip
    save_artifact(build_classifier(arch), card, directory)
    return directory


@pytest.fixture(scope="session")
def worker(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    process = WorkerProcess(worker_environment(redis_server.url, tiny_model_dir), log_path).start()
    try:
        wait_for_workers(redis_server.client(), 1)
    except TimeoutError:
        process.stop()
        raise AssertionError("Worker did not start:\n" + process.log_text()[-4000:]) from None
    yield process
    process.stop()


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, tiny_model_dir: Path) -> Settings:
    return Settings(redis_url=redis_server.url, model_dir=tiny_model_dir, heartbeat_s=1)


@pytest.fixture()
def api(settings: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    """The gateway app in-process, talking to the real Redis and the real worker."""
    from gateway.app import create_app

    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def trained_phantom_model(tmp_path_factory: pytest.TempPathFactory):
    """A small CNN trained on phantoms, served through the real runtime, with held-out data."""
    from shared.imaging import PreprocessParams
    from shared.model_card import ModelCard
    from tests.support.phantom_model import IMAGE_SIZE, phantom_set, train_small_classifier
    from worker.model.artifact import save_artifact
    from worker.model.runtime import ModelRuntime

    # 800 films: with 400, how well the model localises depended on the CPU's kernels (oneDNN
    # on AVX-512/AMX trains a different model than on AVX2) more than on the method.
    model = train_small_classifier(phantom_set(800, seed=1), phantom_set(100, seed=3))
    directory = tmp_path_factory.mktemp("phantom-model")
    card = ModelCard(name="phantom-test", version="0.0.1", synthetic=True,
                     preprocessing=PreprocessParams(image_size=IMAGE_SIZE))  # fmt: skip
    save_artifact(model, card, directory)
    return ModelRuntime.from_directory(directory), phantom_set(120, seed=2)
