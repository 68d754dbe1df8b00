"""The service as real local processes: a redis-server on a free port, Celery worker processes,
HTTP servers, and the waits for each to be ready. The benchmark runs on them; tests borrow them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import httpx
import redis

from shared.store import SyncStore

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"Timed out after {timeout_s} s waiting for {what}.")


class RedisServer:
    """A redis-server the test owns, so it can be stopped and restarted (AOF keeps its data)."""

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = True):
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(self.ping, 10, f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def worker_environment(redis_url: str, model_dir: Path, **overrides: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "PNEUMO_REDIS_URL": redis_url,
        "PNEUMO_MODEL_DIR": str(model_dir),
        "PNEUMO_HEARTBEAT_S": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    environment.update(overrides)
    return environment


class WorkerProcess:
    """`celery -A worker.serving.celery_app worker`, as deployed, as a child process (started as
    `python -m celery`, so it also runs where the packages sit on PYTHONPATH, not in a venv)."""

    def __init__(self, environment: dict[str, str], log_path: Path, name: str = "test-worker"):
        self.environment = environment
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable, "-m", "celery", "-A", "worker.serving.celery_app", "worker",
            "--pool=threads", "--loglevel=INFO", f"--hostname={self.name}@%h", "--without-gossip",
            "--without-mingle", "--queues", self.environment.get("PNEUMO_QUEUE_NAME", "pneumo"),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.environment, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for_workers(client: redis.Redis, count: int, timeout_s: float = 90,
                     processes: Sequence[WorkerProcess] = (),
                     prefix: str = "pneumo") -> None:  # fmt: skip
    """Workers announce themselves in the store once their model is loaded and warm.
    A worker among `processes` that exits meanwhile fails the wait at once, with its log."""
    store = SyncStore(client, prefix, ttl_s=0)  # reads heartbeats only

    def announced() -> bool:
        for worker in processes:
            if worker.process is not None and worker.process.poll() is not None:
                raise RuntimeError(f"Worker {worker.name} exited:\n{worker.log_text()[-3000:]}")
        return len(store.announced_workers()) >= count

    wait_until(announced, timeout_s, f"{count} worker(s)")


class ServerProcess:
    """An HTTP server in a child process (its own process group) on a free port, started and
    waited for: ready when `ready_path` answers 200, or without one, when the port accepts."""

    def __init__(self, command: list[str], environment: dict[str, str], log_path: Path,
                 ready_path: str | None = None, tree: Path = REPO_ROOT):  # fmt: skip
        self.tree = tree  # the checkout it runs from (`python -m` imports from there first)
        self.port = free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.environment = environment
        self.log_path = log_path
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> Self:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.tree, env=self.environment, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self.ready, timeout_s, f"{self.command[0]} on port {self.port}")
        return self

    def ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"The server exited:\n{self.log_text()[-3000:]}")
        if self.ready_path is not None:
            try:
                return httpx.get(self.url + self.ready_path, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class UvicornProcess(ServerProcess):
    """`uvicorn MODULE:app`, or with `factory` `uvicorn --factory MODULE:function` as the
    compose file runs the gateway (the benchmark's servers)."""

    def __init__(self, app: str, environment: dict[str, str], log_path: Path,
                 ready_path: str = "/healthz", factory: bool = False,
                 processes: int = 1, tree: Path = REPO_ROOT):  # fmt: skip
        command = [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), app,
                   "--port", "{port}", "--log-level", "warning", "--no-access-log",
                   "--no-proxy-headers"]  # fmt: skip
        if factory:  # the gateway, as deployed: with its deadline for request heads
            command += ["--http", "gateway.http_protocol:HeadDeadlineProtocol"]
        if processes > 1:  # one listening socket, shared by `processes` servers (a host's gateways)
            command += ["--workers", str(processes)]
        super().__init__(command, environment, log_path, ready_path, tree)
