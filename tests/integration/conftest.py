"""Fixtures for clients that need a real HTTP gateway: the browser, the CLI, the Python client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gated_model import GatedModel, build_gated_model
from tests.support.processes import (
    GatewayProcess,
    RedisServer,
    WorkerProcess,
    wait_for_workers,
    worker_environment,
)


@pytest.fixture(scope="session")
def gateway(
    redis_server: RedisServer,
    tiny_model_dir: Path,
    worker: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """The gateway as its own process, on a free port, in front of the session's real worker."""
    log_path = tmp_path_factory.mktemp("gateway-logs") / "gateway.log"
    environment = worker_environment(redis_server.url, tiny_model_dir)
    process = GatewayProcess(environment, log_path).start()
    yield process
    process.stop()


@dataclass(frozen=True)
class GatedStack:
    model: GatedModel
    redis: RedisServer
    gateway: GatewayProcess


@pytest.fixture(scope="session")
def gated_model(tmp_path_factory: pytest.TempPathFactory) -> GatedModel:
    """A tiny artifact WITH an out-of-distribution gate (`tests.support.gated_model`)."""
    return build_gated_model(tmp_path_factory.mktemp("gated-model") / "model")


@pytest.fixture(scope="session")
def gated_stack(
    gated_model: GatedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatedStack]:
    """A second stack (its own Redis, worker and `pneumo gateway`) serving a tiny model WITH an
    out-of-distribution gate, so its results are in_distribution or out_of_distribution where
    the session's tiny model answers not_assessed."""
    root, model = tmp_path_factory.mktemp("gated"), gated_model
    with RedisServer(root / "redis") as redis_server:
        environment = worker_environment(redis_server.url, model.directory)
        worker = WorkerProcess(environment, root / "worker.log", name="gated-worker").start()
        try:
            wait_for_workers(redis_server.client(), 1, processes=[worker])
            gateway = GatewayProcess(environment, root / "gateway.log").start()
        except (TimeoutError, RuntimeError):
            worker.stop()
            raise AssertionError("Worker did not start:\n" + worker.log_text()[-4000:]) from None
        yield GatedStack(model, redis_server, gateway)
        gateway.stop()
        worker.stop()
