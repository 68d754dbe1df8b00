"""The processes tests start: the benchmark's harness (`bench.processes`), and the gateway as an
operator starts it."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.processes import (
    REPO_ROOT,
    RedisServer,
    ServerProcess,
    UvicornProcess,
    WorkerProcess,
    free_port,
    wait_for_workers,
    wait_until,
    worker_environment,
)

__all__ = [
    "REPO_ROOT", "DicomListenerProcess", "GatewayProcess", "RedisServer", "ServerProcess",
    "UvicornProcess", "WorkerProcess", "free_port", "wait_for_workers", "wait_until",
    "worker_environment",
]  # fmt: skip

BIN = Path(sys.executable).parent


class GatewayProcess(ServerProcess):
    """`pneumo gateway` (uvicorn), as an operator starts it: for clients that need a real HTTP
    server (the browser, the CLI, the Python client)."""

    def __init__(self, environment: dict[str, str], log_path: Path):
        command = [str(BIN / "pneumo"), "gateway", "--host", "127.0.0.1", "--port", "{port}"]
        super().__init__(command, environment, log_path)


class DicomListenerProcess(ServerProcess):
    """`pneumo dicom-listener` (the C-STORE SCP), ready when its port accepts connections."""

    def __init__(self, environment: dict[str, str], log_path: Path, ae_title: str = "PNEUMO"):
        command = [str(BIN / "pneumo"), "dicom-listener", "--host", "127.0.0.1",
                   "--port", "{port}", "--ae-title", ae_title]  # fmt: skip
        super().__init__(command, environment, log_path)
        self.ae_title = ae_title
