"""docker-compose.yml run without Docker: each service's own command and environment, as processes.

Takes `command` and `environment` of the redis, worker-cpu and gateway services from the compose
file (defaults interpolated, no .env), maps container host names and ports to free local ports
and container paths to the repository, starts redis-server (from PATH) with deploy/redis/
redis.conf, then the worker and the gateway from the repo root with .venv/bin on PATH. It waits
for /readyz, submits a PNG, polls the job to `succeeded`, and stops everything the way Compose
would: SIGTERM, then the service's stop_grace_period.

So the compose file's commands, settings, config file and grace periods are exercised for real,
on any machine with redis-server, without a Docker engine.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFilter

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the images put where (COPY models/ /app/models/ in the worker Dockerfiles).
CONTAINER_PATHS = {"/app/models": REPO_ROOT / "models"}
READY_TIMEOUT_S = 300  # TensorFlow import, model load and warm-up on a 2-core CI box
JOB_TIMEOUT_S = 120
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    grace_s: float

    def log_tail(self, characters: int = 3000) -> str:
        return f"--- {self.name} ---\n" + self.log_path.read_text(errors="replace")[-characters:]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the grace period, like `docker compose stop`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                return None
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def grace_seconds(service: dict[str, Any]) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", service.get("stop_grace_period", "10s"))
    assert match, service.get("stop_grace_period")
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def localise(value: str, hosts: dict[str, str]) -> str:
    """Container addresses and paths -> this machine's: redis:6379 -> 127.0.0.1:<free port>."""
    for address, local in hosts.items():
        value = value.replace(f"//{address}", f"//{local}")
    for container_path, host_path in CONTAINER_PATHS.items():
        if value == container_path or value.startswith(container_path + "/"):
            value = str(host_path) + value[len(container_path) :]
    return value


def process_environment(service: dict[str, Any], hosts: dict[str, str]) -> dict[str, str]:
    # Our own PNEUMO_* settings only: a developer's shell must not change what is tested.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("PNEUMO_")}
    venv_bin = REPO_ROOT / ".venv" / "bin"
    search_path = [str(venv_bin), str(Path(sys.executable).parent), inherited.get("PATH", "")]
    declared = {key: localise(str(value), hosts) for key, value in service["environment"].items()}
    return {**inherited, "PATH": os.pathsep.join(search_path), "PYTHONUNBUFFERED": "1", **declared}


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Short-syntax bind mounts, container path -> host path."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (REPO_ROOT / source).resolve()
    return mounts


def start(
    name: str, command: list[str], env: dict[str, str], tmp_path: Path, grace_s: float
) -> Service:
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log_path, grace_s)


def start_redis(compose: dict[str, Any], port: int, tmp_path: Path) -> Service:
    redis = compose["services"]["redis"]
    executable, config_path = redis["command"]
    assert shutil.which(executable), f"{executable} must be on PATH for this test"
    config = bind_mounts(redis)[config_path].read_text(encoding="utf-8")
    # `dir /data` would fail before any command-line override applies (no /data here); the
    # rest of the shipped file is used as is, with port, address and directory overridden.
    local_config = tmp_path / "redis.conf"
    local_config.write_text(re.sub(r"(?m)^dir .*$", "", config), encoding="utf-8")
    data_dir = tmp_path / "redis-data"
    data_dir.mkdir()
    command = [executable, str(local_config), "--port", str(port), "--bind", "127.0.0.1",
               "--dir", str(data_dir)]  # fmt: skip
    service = start("redis", command, dict(os.environ), tmp_path, grace_seconds(redis))
    wait_for(lambda: redis_answers(port), 20, "redis-server", [service])
    return service


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def gateway_command(command: list[str], port: int) -> list[str]:
    """The compose command with this machine's port, listening on loopback only."""
    local = list(command)
    local[local.index("--port") + 1] = str(port)
    local[local.index("--host") + 1] = "127.0.0.1"
    return local


def wait_for(condition, timeout_s: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for service in services:
            if service.process.poll() is not None:
                pytest.fail(f"{service.name} exited while waiting for {what}\n{logs(services)}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{logs(services)}")


def logs(services: list[Service]) -> str:
    return "\n".join(service.log_tail() for service in services)


def is_ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def chest_like_png() -> bytes:
    """A grey radiograph-ish picture: two dark lung fields in a bright body."""
    image = Image.new("L", (320, 320), 40)
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 20, 290, 310), fill=170)
    draw.ellipse((60, 60, 150, 270), fill=70)
    draw.ellipse((170, 60, 260, 270), fill=75)
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(4)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def running_stack(compose: dict[str, Any], tmp_path: Path) -> Iterator[tuple[str, list[Service]]]:
    """redis, worker-cpu and gateway from the compose file; yields the gateway URL."""
    redis_port, gateway_port = free_port(), free_port()
    hosts = {"redis:6379": f"127.0.0.1:{redis_port}"}
    services = [start_redis(compose, redis_port, tmp_path)]
    try:
        for name in ("worker-cpu", "gateway"):
            definition = compose["services"][name]
            command = definition["command"]
            if name == "gateway":
                command = gateway_command(command, gateway_port)
            environment = process_environment(definition, hosts)
            services.append(start(name, command, environment, tmp_path, grace_seconds(definition)))
        yield f"http://127.0.0.1:{gateway_port}", services
    finally:
        # Reverse start order, as Compose stops dependants before their dependencies.
        for service in reversed(services):
            service.stop()


@pytest.mark.slow
def test_compose_services_serve_a_job_end_to_end_as_local_processes(compose, tmp_path):
    worker_environment = process_environment(compose["services"]["worker-cpu"], {})
    model_dir = Path(worker_environment["PNEUMO_MODEL_DIR"])
    # Fail in a second, not after READY_TIMEOUT_S of a worker without a model.
    assert (model_dir / "model.json").is_file(), f"no model artifact in {model_dir}"
    with running_stack(compose, tmp_path) as (base_url, services):
        serve_one_job(base_url, services)
        # Compose sends SIGTERM and waits stop_grace_period: the worker's warm shutdown must fit.
        worker = next(service for service in services if service.name == "worker-cpu")
        exit_code = worker.stop()
        assert exit_code is not None, (
            f"worker ignored SIGTERM for {worker.grace_s} s\n{logs(services)}"
        )


def serve_one_job(base_url: str, services: list[Service]) -> None:
    wait_for(lambda: is_ready(base_url), READY_TIMEOUT_S, "the gateway's /readyz", services)

    with httpx.Client(base_url=base_url, timeout=30) as client:
        files = {"file": ("chest.png", chest_like_png(), "image/png")}
        submitted = client.post("/v1/jobs", files=files)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        assert submitted.headers["Location"].endswith(f"/v1/jobs/{job_id}")

        deadline, job = time.monotonic() + JOB_TIMEOUT_S, submitted.json()
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", f"{job}\n{logs(services)}"

        result = job["result"]
        assert result["label"] in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= result["probability"] <= 1.0
        overlay = client.get(job["explanation"]["overlay_url"])
        assert overlay.status_code == 200
        assert overlay.content.startswith(PNG_SIGNATURE)
