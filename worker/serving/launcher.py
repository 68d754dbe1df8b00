"""`pneumo run-all`: Redis, one worker and the gateway as child processes, supervised.

What `make run` and the all-in-one image (deploy/all-in-one.Dockerfile) run. A child that exits
(a crash, the OOM killer, a SIGKILL) is started again, after a pause that doubles on each quick
exit up to a cap, as compose's `restart: unless-stopped` would restart one container instead of
the whole stack going down with it. SIGTERM or SIGINT stops the three in the order that loses
nothing: the gateway first (no new submissions), then the worker (Celery's warm shutdown hands
its prefetched jobs back), then Redis (it writes its AOF), each within a bounded wait.

The children are started by command line, not imported: this module runs the compose services'
own commands, so the gateway's code stays out of the worker's imports.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

from shared.config import REPO_ROOT

from .cli import worker_command

log = logging.getLogger("pneumo.launcher")

REDIS_CONFIG = REPO_ROOT / "deploy" / "redis" / "redis.conf"
# A child that ran at least this long before exiting was healthy: its next restart starts over
# from the shortest pause.
STABLE_RUN_S = 60.0
FIRST_RESTART_PAUSE_S = 1.0
MAX_RESTART_PAUSE_S = 30.0
# Quick exits in a row after which the log says plainly that a child is crash-looping.
CRASH_LOOP_EXITS = 3
POLL_S = 0.2
REDIS_START_TIMEOUT_S = 30.0
# How long each child may take to stop on SIGTERM before it is killed. The worker's covers the
# slowest batch on a CPU (a few seconds for 16 images on two cores) with a wide margin.
STOP_TIMEOUTS_S = {"gateway": 15.0, "worker": 30.0, "redis": 10.0}
PR_SET_PDEATHSIG = 1


def gateway_command(host: str, port: int) -> list[str]:
    """The compose gateway service's command (docker-compose.yml), on `host`:`port`."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app",
        "--host", host, "--port", str(port), "--no-proxy-headers",
        "--http", "gateway.http_protocol:HeadDeadlineProtocol",
    ]  # fmt: skip


def redis_command(config: Path, port: int) -> list[str]:
    """The deployed redis.conf (AOF on, noeviction), on loopback: only our children use it."""
    return [
        "redis-server", str(config), "--port", str(port), "--bind", "127.0.0.1",
        "--protected-mode", "yes", "--daemonize", "no",
    ]  # fmt: skip


def local_redis_config(source: Path, data_dir: Path) -> Path:
    """`source` with its data directory pointed at `data_dir`. Redis enters the `dir` of its
    config file while parsing it, before any command-line `--dir`, so the container's `/data`
    must be replaced in the file, not overridden."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"dir {data_dir}" if line.strip().startswith("dir ") else line
        for line in source.read_text().splitlines()
    ]
    config = data_dir.parent / "redis.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def describe_exit(status: int) -> str:
    return f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"


def die_with_parent() -> None:
    """Runs in each child before exec: if the launcher itself is SIGKILLed (nothing can catch
    that), the kernel sends the child SIGTERM rather than leaving it running orphaned."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process: its command, where its output goes, and its restart history."""

    name: str
    command: list[str]
    environment: dict[str, str]
    log_path: Path | None  # None: the launcher's own stdout and stderr
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        output: IO[bytes] | None = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                self.command, env=self.environment, stdout=output,
                stderr=subprocess.STDOUT if output else None,
                # Its own process group: Ctrl-C in a terminal reaches the launcher alone, which
                # then stops the children in order.
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        finally:
            if output:
                output.close()  # the child holds its own copy
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("%s started (pid %d)", self.name, self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def schedule_restart(self, now: float) -> None:
        """After an exit: count quick exits, pick the pause, and say so."""
        assert self.process is not None
        status, ran_s = self.process.returncode, now - self.started_at
        self.process = None
        self.quick_exits = self.quick_exits + 1 if ran_s < STABLE_RUN_S else 1
        pause = min(MAX_RESTART_PAUSE_S, FIRST_RESTART_PAUSE_S * 2 ** (self.quick_exits - 1))
        self.restart_at = now + pause
        log.warning("%s exited (%s) after %.1f s; restarting in %.0f s", self.name,
                    describe_exit(status), ran_s, pause)  # fmt: skip
        if self.quick_exits >= CRASH_LOOP_EXITS:
            where = f"; see {self.log_path}" if self.log_path else ""
            log.error("%s is crash-looping: %d exits in a row, each within %.0f s of its start; "
                      "still restarting, at most every %.0f s%s", self.name, self.quick_exits,
                      STABLE_RUN_S, MAX_RESTART_PAUSE_S, where)  # fmt: skip

    def stop(self, timeout_s: float) -> None:
        if not self.running():
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout_s)
            log.info("%s stopped (%s)", self.name, describe_exit(self.process.returncode))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0f s of SIGTERM; killing it", self.name, timeout_s)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()


@dataclass(frozen=True)
class LaunchPlan:
    host: str
    port: int
    redis_port: int
    data_dir: Path
    log_dir: Path | None
    redis_config: Path = REDIS_CONFIG
    queue: str = "pneumo"


class Launcher:
    def __init__(self, plan: LaunchPlan):
        self.plan = plan
        self.stopping = threading.Event()
        environment = {
            **os.environ,
            "PNEUMO_REDIS_URL": f"redis://127.0.0.1:{plan.redis_port}/0",
            "PYTHONUNBUFFERED": "1",
        }
        environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        config = local_redis_config(plan.redis_config, plan.data_dir / "redis")
        logs = plan.log_dir
        if logs:
            logs.mkdir(parents=True, exist_ok=True)
        self.redis = Child("redis", redis_command(config, plan.redis_port), environment,
                           logs / "redis.log" if logs else None)  # fmt: skip
        self.worker = Child("worker", worker_command(plan.queue, "INFO"), environment,
                            logs / "worker.log" if logs else None)  # fmt: skip
        # The gateway's requests are the service's front door: its log stays on the terminal.
        self.gateway = Child("gateway", gateway_command(plan.host, plan.port), environment, None)
        self.children = [self.redis, self.worker, self.gateway]

    def request_stop(self, signal_number: int, _frame: object) -> None:
        if not self.stopping.is_set():
            log.info("%s received: stopping", signal.Signals(signal_number).name)
        self.stopping.set()

    def redis_answers(self) -> bool:
        """Our redis-server answers on the port: not another one that already held it."""
        if self.redis.process is None:
            return False
        try:
            client = redis.Redis(port=self.plan.redis_port, socket_connect_timeout=0.5)
            return bool(client.info("server")["process_id"] == self.redis.process.pid)
        except redis.RedisError:
            return False

    def start_redis(self) -> None:
        """Redis first, and answering, so the others do not start by failing to connect."""
        self.redis.start()
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not self.redis_answers():
            if not self.redis.running():
                where = f"; see {self.redis.log_path}" if self.redis.log_path else ""
                raise RuntimeError(
                    f"redis-server exited at start (port {self.plan.redis_port} "
                    f"in use? --redis-port or PNEUMO_LOCAL_REDIS_PORT){where}"
                )
            if time.monotonic() > deadline or self.stopping.wait(0.1):
                return  # a slow or interrupted start: supervision (or the stop) takes over
        log.info("redis on 127.0.0.1:%d (AOF in %s)", self.plan.redis_port,
                 self.plan.data_dir / "redis")  # fmt: skip

    def run(self) -> int:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, self.request_stop)
        try:
            try:
                self.start_redis()
            except RuntimeError as error:  # a port in use, an unreadable config: no retry helps
                log.error("%s", error)
                return 1
            if not self.stopping.is_set():
                self.worker.start()
                self.gateway.start()
                log.info("gateway on http://%s:%d (docs at /docs, readiness at /readyz)",
                         self.plan.host, self.plan.port)  # fmt: skip
            while not self.stopping.wait(POLL_S):
                self.supervise_once(time.monotonic())
        finally:
            self.stop_all()
        return 0

    def supervise_once(self, now: float) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                child.schedule_restart(now)
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.start()

    def stop_all(self) -> None:
        """Gateway, worker, Redis: each drains into the next one down."""
        for child in (self.gateway, self.worker, self.redis):
            child.stop(STOP_TIMEOUTS_S[child.name])
        log.info("all stopped")
