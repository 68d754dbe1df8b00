"""The service as local processes for the benchmark: worker and gateway settings, and the
CPU and memory each process uses. The processes themselves are in `bench.processes`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.processes import RedisServer, WorkerProcess, worker_environment


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per request, by process, over one load run: where the cores went.

    `pids` names the service's processes; the load generator (this process) is measured too,
    because on one machine it competes with the service for the same cores. A run without
    load (a drain) leaves it out with `load_generator=False`."""

    def __init__(self, pids: dict[str, int], load_generator: bool = True):
        self.pids = pids
        self.load_generator = load_generator

    def __enter__(self) -> CpuMeter:
        self._started = self._spent_so_far()
        return self

    def __exit__(self, *_: object) -> None:
        self._ended = self._spent_so_far()

    def _spent_so_far(self) -> dict[str, float]:
        spent = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.load_generator:
            spent["load generator"] = time.process_time()
        return spent

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
                 name: str = "bench-worker", **settings: str) -> WorkerProcess:  # fmt: skip
    """`settings`: environment variables on top of the benchmark's (PNEUMO_...)."""
    defaults = {"PNEUMO_BATCH_SIZE": str(batch_size), "PNEUMO_BATCH_WAIT_MS": "10"}
    environment = worker_environment(redis.url, model_dir, **(defaults | settings))
    return WorkerProcess(environment, log_dir / f"{name}.log", name=name).start()


def gateway_environment(redis: RedisServer, model_dir: Path) -> dict[str, str]:
    return {**os.environ, "PNEUMO_REDIS_URL": redis.url, "PNEUMO_MODEL_DIR": str(model_dir),
            "PNEUMO_HEARTBEAT_S": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
