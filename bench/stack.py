"""The service as local processes for the benchmark: worker and gateway settings, and the
CPU and memory each process uses. The processes themselves are in `bench.processes`."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.processes import RedisServer, WorkerProcess, worker_environment


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads included."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (`uvicorn --workers N`'s N servers, their helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):  # exited while listed
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def tree_cpu_seconds(pids: int | Sequence[int]) -> float:
    """CPU time of these processes and every live process below them. (A child that exited
    meanwhile is counted in its parent only once waited for: none does here.)"""
    roots = [pids] if isinstance(pids, int) else list(pids)
    total = 0.0
    for pid in roots + [below for root in roots for below in descendants(root)]:
        try:
            total += cpu_seconds(pid)
        except OSError:  # exited between the listing and the reading
            continue
    return total


class CpuMeter:
    """CPU milliseconds per request, by process, over one load run: where the cores went.

    `pids` names the service's processes, by kind: one process or several, each with every
    process below it (a supervisor's children). The load generator (this process) is measured too,
    because on one machine it competes with the service for the same cores. A run without
    load (a drain) leaves it out with `load_generator=False`."""

    def __init__(self, pids: Mapping[str, int | Sequence[int]], load_generator: bool = True):
        self.pids = pids
        self.load_generator = load_generator

    def __enter__(self) -> CpuMeter:
        self._started = self._spent_so_far()
        return self

    def __exit__(self, *_: object) -> None:
        self._ended = self._spent_so_far()

    def _spent_so_far(self) -> dict[str, float]:
        spent = {name: tree_cpu_seconds(pids) for name, pids in self.pids.items()}
        if self.load_generator:
            spent["load generator"] = time.process_time()
        return spent

    def per_request_ms(self, requests: int) -> dict[str, float]:
        spent = {name: (self._ended[name] - self._started[name]) * 1000.0 / requests
                 for name in self._started}  # fmt: skip
        return {name: round(value, 2) for name, value in spent.items()} | {
            "total": round(sum(spent.values()), 2)
        }


class HostBusy:
    """The share of the machine's CPU time that was busy over a block, every process counted
    (/proc/stat): what says a run was bound by the host's cores even where the processes
    measured by name (`CpuMeter`) were not the ones using them."""

    def __enter__(self) -> HostBusy:
        self._started = self._busy_and_total()
        return self

    def __exit__(self, *_: object) -> None:
        self._ended = self._busy_and_total()

    @property
    def share(self) -> float:
        busy = self._ended[0] - self._started[0]
        total = self._ended[1] - self._started[1]
        return round(busy / total, 3) if total else 0.0

    @staticmethod
    def _busy_and_total() -> tuple[int, int]:
        # cpu  user nice system idle iowait irq softirq steal guest guest_nice
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        total = sum(ticks[:8])  # guest time is already inside user and nice
        return total - ticks[3] - ticks[4], total


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
