"""The all-in-one image's entrypoint (`pneumo run-all`, worker/serving/launcher.py) as local
processes: its ENTRYPOINT read from deploy/all-in-one.Dockerfile, the image's paths mapped to the
checkout's, on free ports from PORT and PNEUMO_LOCAL_REDIS_PORT.

One launcher serves the module, in order: a job end to end (and the image's HEALTHCHECK passes);
a SIGKILLed worker is restarted and every accepted job still finishes exactly once; a SIGKILLed
Redis is restarted with its data; SIGTERM stops every child and the launcher exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.deploy.test_dockerfiles import DOCKERFILES, all_in_one_entrypoint, parse_dockerfile
from tests.support.faults import Tally, finish_and_tally, records, running_jobs
from tests.support.images import phantom_png
from tests.support.processes import BIN, REPO_ROOT, RedisServer, free_port, wait_until

pytestmark = pytest.mark.slow

# Short enough that the killed worker's claimed jobs come back within the test; above the batch
# time limits, which must stay below it.
VISIBILITY_S = 6
JOBS = 32
IMAGES = [phantom_png(seed=seed, size=96) for seed in range(4)]
# Where the image's COPY instructions put what the checkout has in place.
IMAGE_PATHS = {"/app/redis.conf": str(REPO_ROOT / "deploy" / "redis" / "redis.conf")}


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    port: int
    redis_port: int
    data_dir: Path
    log_path: Path
    environment: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> dict[int, str]:
        """pid -> command line of each running child of the launcher."""
        found = {}
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            for pid in (task / "children").read_text().split():
                try:
                    found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                except FileNotFoundError:
                    continue  # exited between the two reads
        return found

    def child(self, marker: str) -> int:
        pids = [pid for pid, command in self.children().items() if marker in command]
        assert len(pids) == 1, self.children()
        return pids[0]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"The launcher exited:\n{self.log_text()[-4000:]}")
        try:
            response = httpx.get(self.url + "/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["workers"] >= 1


@pytest.fixture(scope="module")
def launched(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    directory = tmp_path_factory.mktemp("all-in-one")
    data_dir = directory / "data"
    paths = {**IMAGE_PATHS, "/home/user/data": str(data_dir), "0.0.0.0": "127.0.0.1"}
    entrypoint = all_in_one_entrypoint()
    command = [str(BIN / entrypoint[0]), *(paths.get(word, word) for word in entrypoint[1:])]
    port, redis_port = free_port(), free_port()
    environment = {
        **os.environ, "PORT": str(port), "PNEUMO_LOCAL_REDIS_PORT": str(redis_port),
        "PNEUMO_MODEL_DIR": str(tiny_model_dir), "PNEUMO_HEARTBEAT_S": "1",
        "PNEUMO_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S), "PNEUMO_BATCH_SIZE": "8",
        "PNEUMO_BATCH_SOFT_TIME_LIMIT_S": "3", "PNEUMO_BATCH_HARD_TIME_LIMIT_S": "5",
    }  # fmt: skip
    log_path = directory / "launcher.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=directory, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    launched = Launched(process, port, redis_port, data_dir, log_path, environment)
    children: set[int] = set()
    try:
        wait_until(launched.ready, 120, "the launcher's gateway and worker")
        children |= set(launched.children())
        yield launched
    finally:
        if process.poll() is None:
            children |= set(launched.children())
            process.terminate()
            process.wait(90)
        for pid in children:  # a failed test must not leave the stack running
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def submit(url: str, index: int) -> str:
    image = IMAGES[index % len(IMAGES)]
    response = httpx.post(url + "/v1/jobs", files={"file": ("x.png", image)}, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_the_entrypoint_serves_a_job_end_to_end(launched: Launched) -> None:
    job_id = submit(launched.url, 0)
    job = httpx.get(f"{launched.url}/v1/jobs/{job_id}", params={"wait": 20}, timeout=30).json()
    assert job["status"] == "succeeded", job
    overlay = httpx.get(f"{launched.url}/v1/jobs/{job_id}/overlay.png", timeout=30)
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
    # The image's HEALTHCHECK, run as written, against this port.
    healthcheck = next(
        i.arguments
        for i in parse_dockerfile(DOCKERFILES["all-in-one"])
        if i.keyword == "HEALTHCHECK"
    )
    words = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert words[0] == "python"
    result = subprocess.run([str(BIN / "python"), *words[1:]], env=launched.environment,
                            capture_output=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr


def stop_holding_a_batch(pid: int, client: redis.Redis, job_ids: list[str]) -> set[str]:
    """SIGSTOP the worker at a moment it holds a claimed batch; that batch's jobs. Stopped
    first and looked at second: a claimed batch is held for milliseconds at a time."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        held = running_jobs(client, job_ids)
        if held:
            return held
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("The worker never held a claimed batch.")


def test_a_sigkilled_worker_is_restarted_and_every_job_finishes_once(launched: Launched) -> None:
    client = redis.Redis(port=launched.redis_port)
    victim = launched.child("celery")
    os.kill(victim, signal.SIGSTOP)  # a queue builds up behind a worker that holds a batch
    try:
        job_ids = [submit(launched.url, index) for index in range(JOBS)]
    finally:
        os.kill(victim, signal.SIGCONT)
    held = stop_holding_a_batch(victim, client, job_ids)
    os.kill(victim, signal.SIGKILL)
    queued_at_kill = client.llen("pneumo")
    wait_until(lambda: any("celery" in command and pid != victim
                           for pid, command in launched.children().items()),
               10, "the launcher to start a worker again")  # fmt: skip
    result = finish_and_tally(client, job_ids, timeout_s=VISIBILITY_S + 60)
    print(f"killed holding {len(held)} claimed jobs, {queued_at_kill} queued")
    assert queued_at_kill > 0
    assert result == Tally(JOBS, JOBS, 0, 0, 0)
    # The claimed batch came back after the visibility timeout and was run once more.
    assert [job["attempts"] for job in records(client, sorted(held))] == [2] * len(held)
    assert "worker exited (killed by SIGKILL)" in launched.log_text()


def test_a_sigkilled_redis_is_restarted_with_its_jobs(launched: Launched) -> None:
    job_id = submit(launched.url, 1)
    job = httpx.get(f"{launched.url}/v1/jobs/{job_id}", params={"wait": 20}, timeout=30).json()
    assert job["status"] == "succeeded", job
    # appendfsync everysec: a SIGKILL may lose the last second; a rewritten AOF holds it all.
    client = redis.Redis(port=launched.redis_port)
    client.bgrewriteaof()
    wait_until(lambda: not any(client.info("persistence")[key] for key in
                               ("aof_rewrite_in_progress", "aof_rewrite_scheduled")),
               10, "the AOF rewrite")  # fmt: skip
    victim = launched.child("redis-server")
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: "redis exited (killed by SIGKILL)" in launched.log_text(), 10, "the exit")
    wait_until(launched.ready, 30, "Redis back, and the gateway and worker on it")
    assert launched.child("redis-server") != victim
    job = httpx.get(f"{launched.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "succeeded"  # read back from the AOF


def test_sigterm_stops_every_child_and_exits_0(launched: Launched) -> None:
    children = launched.children()
    for marker in ("redis-server", "celery", "uvicorn"):
        launched.child(marker)  # each of the three runs once
    started = time.monotonic()
    launched.process.send_signal(signal.SIGTERM)
    assert launched.process.wait(70) == 0
    print(f"stopped in {time.monotonic() - started:.1f} s")
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    log = launched.log_text()
    stops = [log.index(f"{name} stopped") for name in ("gateway", "worker", "redis")]
    assert stops == sorted(stops), log[-2000:]  # in the order that loses nothing
    assert (launched.data_dir / "redis" / "appendonlydir").is_dir()


def test_a_port_held_by_another_redis_is_refused_not_used(tmp_path: Path) -> None:
    """A Redis already on the port answers pings; the launcher must see that it is not its own
    and stop, rather than serve jobs from someone else's Redis."""
    with RedisServer(tmp_path / "other") as other:
        environment = {**os.environ, "PNEUMO_LOCAL_REDIS_PORT": str(other.port),
                       "PORT": str(free_port())}  # fmt: skip
        command = [str(BIN / "pneumo"), "run-all", "--data-dir", str(tmp_path)]
        result = subprocess.run(command, env=environment, capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"redis-server exited at start (port {other.port} in use?" in result.stderr
    assert "worker started" not in result.stderr
