"""Fixtures for clients that need a real HTTP gateway: the browser, the CLI, the Python client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import GatewayProcess, RedisServer, WorkerProcess, worker_environment


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
