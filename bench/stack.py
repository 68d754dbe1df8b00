"""The service as local processes for the benchmark: Redis, worker(s), gateway, baseline."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import (
    BIN,
    REPO_ROOT,
    RedisServer,
    WorkerProcess,
    free_port,
    wait_until,
    worker_environment,
)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class HttpServer:
    """`uvicorn MODULE:app` in a child process, as the compose file runs the gateway."""

    app: str
    environment: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/healthz", timeout_s: float = 120) -> HttpServer:
        command = [str(BIN / "uvicorn"), self.app, "--port", str(self.port), "--log-level",
                   "warning", "--no-access-log"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.environment,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        wait_until(lambda: _http_ok(self.url + ready_path), timeout_s, f"{self.app} to be ready")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per request, by process, over one load run: where the cores went.

    `pids` names the service's processes; the load generator (this process) is measured too,
    because on one machine it competes with the service for the same cores."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self._started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._started["load generator"] = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self._ended = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._ended["load generator"] = time.process_time()

    def per_request_ms(self, requests: int) -> dict[str, float]:
        spent = {name: (self._ended[name] - self._started[name]) * 1000.0 / requests
                 for name in self._started}  # fmt: skip
        return {name: round(value, 2) for name, value in spent.items()} | {
            "total": round(sum(spent.values()), 2)
        }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def start_worker(redis: RedisServer, model_dir: Path, log_dir: Path, batch_size: int,
                 name: str = "bench-worker") -> WorkerProcess:  # fmt: skip
    environment = worker_environment(
        redis.url, model_dir, PNEUMO_BATCH_SIZE=str(batch_size), PNEUMO_BATCH_WAIT_MS="10"
    )
    return WorkerProcess(environment, log_dir / f"{name}.log", name=name).start()


def gateway_environment(redis: RedisServer, model_dir: Path) -> dict[str, str]:
    return {**os.environ, "PNEUMO_REDIS_URL": redis.url, "PNEUMO_MODEL_DIR": str(model_dir),
            "PNEUMO_HEARTBEAT_S": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
