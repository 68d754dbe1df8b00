"""Faults, for real: a SIGKILLed worker, a restarted Redis, a stopped Redis.

These scenarios get their own redis-server (AOF on, everysec, noeviction, as deployed) and two
worker processes with a short visibility timeout, so they can kill and restart them freely.
The SIGKILL and broker-restart scenarios run on both brokers: Redis, and RabbitMQ (a node of
their own, records in a Redis of their own) where the restarted broker is RabbitMQ.
Each prints `submitted= succeeded= failed= lost= duplicated=`: `lost` counts accepted jobs not
final at the deadline, `duplicated` jobs whose final state was written more than once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.rabbitmq import RabbitMQServer
from shared.config import Settings
from shared.dicom_results import part10
from tests.support.dicom_network import radiograph, related_body
from tests.support.faults import (
    Tally,
    all_final,
    finish_and_tally,
    freeze_mid_batch,
    paused,
    records,
    restart_after,
    sweeper_requeues,
)
from tests.support.images import phantom_png
from tests.support.processes import (
    REPO_ROOT,
    RedisServer,
    WorkerProcess,
    wait_for_workers,
    wait_until,
    worker_environment,
)

pytestmark = pytest.mark.slow

JOBS = 200
# Short enough that a killed worker's jobs come back within the test, and still above the
# batch time limits (which must stay below it).
VISIBILITY_S = 10
TIME_LIMITS = {"batch_soft_time_limit_s": 5.0, "batch_hard_time_limit_s": 8.0}
IMAGES = [phantom_png(seed=seed, size=96) for seed in range(8)]
WORKER_SETTINGS = {
    "PNEUMO_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    "PNEUMO_BATCH_SOFT_TIME_LIMIT_S": str(TIME_LIMITS["batch_soft_time_limit_s"]),
    "PNEUMO_BATCH_HARD_TIME_LIMIT_S": str(TIME_LIMITS["batch_hard_time_limit_s"]),
    "PNEUMO_BATCH_SIZE": "8",
}


@pytest.fixture(scope="module")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("fault-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def fault_workers(
    fault_redis: RedisServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    environment = worker_environment(fault_redis.url, tiny_model_dir, **WORKER_SETTINGS)
    logs = tmp_path_factory.mktemp("fault-logs")
    workers = [
        WorkerProcess(environment, logs / f"{name}.log", name=name).start()
        for name in ("fault-a", "fault-b")
    ]
    try:
        wait_for_workers(fault_redis.client(), 2, timeout_s=180)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture()
def fault_api(
    fault_redis: RedisServer, fault_workers: list[WorkerProcess], tiny_model_dir: Path
) -> Iterator[TestClient]:
    from gateway.app import create_app

    settings = Settings(
        redis_url=fault_redis.url, model_dir=tiny_model_dir, heartbeat_s=1,
        visibility_timeout_s=VISIBILITY_S, **TIME_LIMITS,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield client


@dataclass(frozen=True)
class BrokerStack:
    """Two workers and a gateway over one broker; job records in `records`."""

    records: RedisServer
    broker: RedisServer | RabbitMQServer
    workers: list[WorkerProcess]
    api: TestClient

    def queue_holds_nothing(self) -> bool:
        """No copy of any job waits in the broker or is held unacknowledged."""
        if isinstance(self.broker, RabbitMQServer):
            queue = self.broker.queue("pneumo")
            return queue["messages_ready"] == queue["messages_unacknowledged"] == 0
        client = self.broker.client()
        return client.hlen("unacked") == 0 and client.llen("pneumo") == 0


@pytest.fixture(scope="module")
def rabbitmq_fault_stack(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RedisServer, RabbitMQServer, list[WorkerProcess]]]:
    root = tmp_path_factory.mktemp("fault-rabbitmq")
    with RedisServer(root / "records") as records:
        broker = RabbitMQServer(root / "rabbitmq")
        environment = worker_environment(
            records.url, tiny_model_dir, **WORKER_SETTINGS, PNEUMO_BROKER_URL=broker.url
        )
        # The workers load their model while the node boots (they retry the broker until it
        # answers): the two waits overlap.
        workers = [
            WorkerProcess(environment, root / f"{name}.log", name=name).start()
            for name in ("fault-amqp-a", "fault-amqp-b")
        ]
        try:
            broker.start()
            wait_for_workers(records.client(), 2, timeout_s=180, processes=workers)
            assert broker.queue("pneumo")["type"] == "quorum"
            yield records, broker, workers
        finally:
            stop_together(workers)
            broker.stop()


def stop_together(workers: list[WorkerProcess]) -> None:
    """SIGTERM to every live worker first, then the waits: the warm shutdowns side by side."""
    live = [
        worker.process for worker in workers if worker.process and worker.process.poll() is None
    ]
    for process in live:
        os.killpg(process.pid, signal.SIGTERM)
    for process in live:
        process.wait(30)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_stack(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Iterator[BrokerStack]:
    if request.param == "redis":
        redis_server = request.getfixturevalue("fault_redis")
        workers = request.getfixturevalue("fault_workers")
        yield BrokerStack(redis_server, redis_server, workers, request.getfixturevalue("fault_api"))
        return
    from gateway.app import create_app

    records, broker, workers = request.getfixturevalue("rabbitmq_fault_stack")
    settings = Settings(
        redis_url=records.url, broker_url=broker.url, model_dir=tiny_model_dir, heartbeat_s=1,
        visibility_timeout_s=VISIBILITY_S, **TIME_LIMITS,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield BrokerStack(records, broker, workers, client)


def submit(api: TestClient, index: int) -> tuple[int, dict]:
    response = api.post("/v1/jobs", files={"file": ("x.png", IMAGES[index % len(IMAGES)])})
    return response.status_code, response.json()


def test_sigkill_a_worker_mid_batch_every_job_ends_succeeded_once(
    broker_stack: BrokerStack,
) -> None:
    """Redis hands the victim's unacknowledged jobs back after the visibility timeout;
    RabbitMQ as soon as the victim's connection closes."""
    stack = broker_stack
    client, requeued_before = stack.records.client(), sweeper_requeues(stack.workers)
    victim, *survivors = stack.workers
    # The victim alone takes the backlog: with a survivor running beside it on a busy machine,
    # the survivor once drained all of it while the victim was caught between batches.
    with paused(survivors):
        with paused([victim]):  # a backlog, so the victim is surely busy when frozen
            replies = [submit(stack.api, index) for index in range(JOBS)]
        assert [status for status, _ in replies] == [202] * JOBS
        job_ids = [body["job_id"] for _, body in replies]
        held = freeze_mid_batch(victim, client, job_ids)
        victim.kill(signal.SIGKILL)
    result = finish_and_tally(client, job_ids, timeout_s=VISIBILITY_S + 90)
    assert result == Tally(JOBS, JOBS, 0, 0, 0)
    attempts = [job["attempts"] for job in records(client, sorted(held))]
    requeued = sweeper_requeues(stack.workers) - requeued_before
    print(f"the killed worker held {len(held)} claimed jobs; their deliveries: {attempts}; "
          f"queued again by the sweeper: {requeued}")  # fmt: skip
    assert attempts == [2] * len(held)
    wait_until(stack.queue_holds_nothing, 30, "the queue to hold no copy of any job")


def test_a_killed_gpu_style_workers_jobs_come_back_through_the_sweeper(
    fault_api: TestClient, fault_redis: RedisServer, fault_workers: list[WorkerProcess],
    tiny_model_dir: Path, tmp_path: Path,
) -> None:  # fmt: skip
    """The GPU worker's settings: with PNEUMO_BROKER_ACK_EMULATION=false kombu keeps no
    record of delivered messages, so a SIGKILL loses the victim's claimed batches (two in
    flight) and the messages it prefetched (many per round trip) outright; the pending-job
    sweeper must bring every one of them back."""
    client, jobs = fault_redis.client(), 40
    environment = worker_environment(
        fault_redis.url, tiny_model_dir, **WORKER_SETTINGS, PNEUMO_BROKER_ACK_EMULATION="false",
        PNEUMO_BROKER_MULTI_POP="true", PNEUMO_BATCHES_IN_FLIGHT="2",
    )  # fmt: skip
    alive = [worker for worker in fault_workers if worker.process and worker.process.poll() is None]
    with paused(alive):  # the victim alone takes the jobs
        victim = WorkerProcess(environment, tmp_path / "victim.log", name="fault-noack").start()
        try:
            assert victim.process is not None
            name = f"{socket.gethostname()}:{victim.process.pid}"  # as the worker names itself
            wait_until(lambda: client.hexists("pneumo:workers", name), 180, "the victim to start")
            with paused([victim]):  # a backlog, so that it is surely busy when frozen
                replies = [submit(fault_api, index) for index in range(jobs)]
            assert [status for status, _ in replies] == [202] * jobs
            job_ids = [body["job_id"] for _, body in replies]
            held = freeze_mid_batch(victim, client, job_ids)
            assert client.hlen("unacked") == 0  # no delivery recorded: the setting reached kombu
            assert client.info("commandstats")["cmdstat_blmpop"]["calls"] > 0
        finally:
            victim.kill(signal.SIGKILL)
    result = finish_and_tally(client, job_ids, timeout_s=2 * VISIBILITY_S + 60)
    assert result == Tally(jobs, jobs, 0, 0, 0)
    assert all(job["attempts"] == 2 for job in records(client, sorted(held)))


def submit_until_accepted(api: TestClient, index: int, refusals: list[int]) -> str:
    """A well-behaved client: on 503 it waits as told by Retry-After (capped) and tries again."""
    for _ in range(200):
        status, body = submit(api, index)
        if status == 202:
            return str(body["job_id"])
        assert status == 503, (status, body)
        refusals.append(index)
        time.sleep(0.2)
    raise AssertionError("Never accepted.")


def test_broker_restart_mid_run_every_accepted_job_succeeds(broker_stack: BrokerStack) -> None:
    """The broker (Redis, or RabbitMQ with the records' Redis up throughout) stops and starts
    again while jobs are submitted and worked: the gateway refuses with 503 meanwhile, and
    every job it accepted ends succeeded, once."""
    stack = broker_stack
    live = [worker for worker in stack.workers if worker.process and worker.process.poll() is None]
    assert live, "no worker left"
    refusals: list[int] = []
    requeued_before = sweeper_requeues(stack.workers)
    restart = restart_after(stack.broker, delay_s=1.0, down_s=2.0)
    # At least JOBS submissions, and on until the broker is back: a fast machine would
    # otherwise submit them all before the outage begins.
    job_ids: list[str] = []
    while len(job_ids) < JOBS or restart.is_alive():
        job_ids.append(submit_until_accepted(stack.api, len(job_ids), refusals))
    restart.join()
    result = finish_and_tally(stack.records.client(), job_ids, timeout_s=VISIBILITY_S + 120)
    requeued = sweeper_requeues(stack.workers) - requeued_before
    print(f"refused with 503 while the broker was down: {len(refusals)}; "
          f"queued again by the sweeper: {requeued}")  # fmt: skip
    submitted = len(job_ids)
    assert result == Tally(submitted, submitted, 0, 0, 0)
    assert refusals, "The broker went down after the run had finished; nothing was tested"


# Routes that answer without Redis: liveness and the API description.
NEEDS_NO_REDIS = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def every_route_request(api: TestClient, job_id: str) -> Iterator[tuple[str, str, dict]]:
    """(method, path, request options) for every operation the API documents, ids filled in."""
    image = IMAGES[0]
    upload = {"files": [("file", ("x.png", image)), ("files", ("x.png", image))]}
    for template, operations in api.get("/openapi.json").json()["paths"].items():
        path = template.replace("{name}", "overlay")
        path = path.replace("{job_id}", job_id).replace("{batch_id}", job_id)
        path = path.replace("{study}", radiograph().StudyInstanceUID)
        for method in operations:
            if path.startswith("/dicomweb/studies"):
                body, content_type = related_body([("application/dicom", part10(radiograph()))])
                yield "POST", path, {"content": body, "headers": {"Content-Type": content_type}}
            else:
                yield method.upper(), path, upload if method == "post" else {}


def test_redis_down_every_route_answers_503_then_all_recovers(
    fault_api: TestClient, fault_redis: RedisServer, fault_workers: list[WorkerProcess]
) -> None:
    status, body = submit(fault_api, 0)
    assert status == 202
    routes = list(every_route_request(fault_api, body["job_id"]))
    assert len(routes) >= 10
    fault_redis.stop()
    try:
        answers = {
            (method, path): fault_api.request(method, path, **options)
            for method, path, options in routes
        }
        long_poll = fault_api.get(f"/v1/jobs/{body['job_id']}", params={"wait": 2})
    finally:
        fault_redis.start()
    for (method, path), response in {**answers, ("GET", "?wait=2"): long_poll}.items():
        print(method, path, response.status_code, response.headers.get("Retry-After"))
        if path in NEEDS_NO_REDIS:
            assert response.status_code == 200, (method, path)
            continue
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"], (method, path)
    # The same gateway and the same workers, back without any restart of theirs.
    wait_until(lambda: fault_api.get("/readyz").status_code == 200, 60, "readiness after Redis")
    status, body = submit(fault_api, 1)
    assert status == 202
    done = fault_api.get(f"/v1/jobs/{body['job_id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded"


def seeded_job(
    server: RedisServer, attempts: int, status: str = "running", prefix: str = "pneumo"
) -> str:
    """A job as a worker left it: claimed `attempts` times and never finished."""
    from shared.schemas import JobStatus
    from shared.store import SyncStore, new_job

    store = SyncStore.from_url(server.url, prefix, 3600)
    job = new_job(str(uuid.uuid4()), 3600)
    job.status, job.attempts = JobStatus(status), attempts
    store.save([job], {job.job_id: {"upload": IMAGES[0]}})
    return job.job_id


@pytest.mark.parametrize(("earlier_deliveries", "status", "code"),
                         [(2, "succeeded", None), (3, "failed", "worker_lost")])  # fmt: skip
def test_deliveries_are_bounded(
    settings: Settings, worker: WorkerProcess, redis_server: RedisServer,
    earlier_deliveries: int, status: str, code: str | None,
) -> None:  # fmt: skip
    """Three workers died holding it (max_deliveries=3): the next delivery fails it for good."""
    from shared.queue import enqueue_predict, make_celery

    job_id = seeded_job(redis_server, earlier_deliveries)
    enqueue_predict(make_celery(settings, "test-producer"), settings, job_id)
    client = redis_server.client()
    wait_until(lambda: all_final(client, [job_id]), 30, "the redelivered job")
    job = records(client, [job_id])[0]
    assert job["status"] == status and (job["error"] or {}).get("code") == code
    assert job["attempts"] == min(earlier_deliveries + 1, 3)


def test_final_writes_are_conditional_so_racing_deliveries_write_one_answer(
    redis_server: RedisServer,
) -> None:
    from shared.schemas import JobStatus
    from shared.store import SyncStore, Write

    store = SyncStore.from_url(redis_server.url, "pneumo", 3600)
    job_id = seeded_job(redis_server, attempts=1)
    job = store.load_jobs([job_id])[0]
    assert job is not None
    first = job.model_copy(update={"status": JobStatus.succeeded})
    second = job.model_copy(update={"status": JobStatus.failed})
    landed = store.write_unless_final(
        [Write(first, {"overlay": b"1"}), Write(second, {"overlay": b"2"})]
    )
    assert landed == [True, False]
    assert store.write_unless_final([Write(job)]) == [False]  # a late claim cannot reopen it
    client = redis_server.client()
    assert client.get(f"pneumo:finals:{job_id}") == b"1"
    assert client.get(f"pneumo:blob:{job_id}:overlay") == b"1"
    assert records(client, [job_id])[0]["status"] == "succeeded"
    client.delete(f"pneumo:job:{job_id}")  # deleted by its owner meanwhile: not brought back
    assert store.write_unless_final([Write(first)]) == [False]
    assert not client.exists(f"pneumo:job:{job_id}")


def test_soft_time_limit_hands_the_batch_back_before_any_final_write(
    redis_server: RedisServer, tiny_model_dir: Path
) -> None:
    from shared.imaging import IntakeLimits
    from shared.store import SyncStore
    from worker.model.runtime import ModelRuntime
    from worker.serving.pipeline import process_jobs
    from worker.serving.time_limits import BatchTimeLimitExceeded, Deadline

    store = SyncStore.from_url(redis_server.url, "pneumo", 3600)
    job_id = seeded_job(redis_server, attempts=0, status="queued")
    runtime = ModelRuntime.from_directory(tiny_model_dir)
    with pytest.raises(BatchTimeLimitExceeded):
        process_jobs([job_id], store, runtime, IntakeLimits(), deadline=Deadline(time.monotonic()))
    job = records(redis_server.client(), [job_id])[0]
    assert (job["status"], job["attempts"]) == ("running", 1)
    assert not redis_server.client().exists(f"pneumo:finals:{job_id}")


def test_sweeper_queues_again_a_pending_job_whose_message_was_lost(
    redis_server: RedisServer,
) -> None:
    """What a broker hole leaves behind: a pending job with no message anywhere."""
    from shared.store import SyncStore
    from worker.serving.recovery import sweep_once

    prefix = f"sweep-{uuid.uuid4().hex[:8]}"  # its own pending index, whatever else runs
    store = SyncStore.from_url(redis_server.url, prefix, 3600)
    client, pending = redis_server.client(), f"{prefix}:pending"
    lost, finished = (seeded_job(redis_server, attempts=0, status=status, prefix=prefix)
                      for status in ("queued", "succeeded"))  # fmt: skip
    client.zadd(pending, {lost: time.time() - 60, finished: time.time() - 60})
    queued_again: list[str] = []
    assert sweep_once(store, queued_again.append, older_than_s=30) == 1
    assert queued_again == [lost]
    assert client.zscore(pending, finished) is None  # forgotten: nothing to do
    assert client.zscore(pending, lost) > time.time() - 5  # its clock restarted
    assert sweep_once(store, queued_again.append, older_than_s=30) == 0
    client.delete(*client.keys(f"{prefix}:*"))


@pytest.mark.parametrize(("work_s", "exit_code"), [(30, 70), (0, 0)], ids=["overrun", "in_time"])
def test_hard_time_limit_ends_the_process(work_s: float, exit_code: int) -> None:
    """The watchdog ends a process stuck past the hard limit, and leaves a punctual one alone."""
    program = (
        "import time\nfrom worker.serving.time_limits import Watchdog\n"
        f"with Watchdog(poll_s=0.05).guard(0.5):\n    time.sleep({work_s})\ntime.sleep(1)\n"
    )
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, timeout=20)
    assert finished.returncode == exit_code
    assert time.monotonic() - started < 10


def test_hard_time_limit_holds_for_each_of_two_batches_in_flight() -> None:
    """With two batches in flight, one finishing must not lift the other's hard limit."""
    program = (
        "import threading, time\nfrom worker.serving.time_limits import Watchdog\n"
        "dog = Watchdog(poll_s=0.05)\n"
        "def stuck():\n    with dog.guard(0.5):\n        time.sleep(30)\n"
        "threading.Thread(target=stuck, daemon=True).start()\n"
        "for _ in range(40):\n    with dog.guard(0.5):\n        time.sleep(0.05)\n"
        "time.sleep(5)\n"
    )
    finished = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, timeout=20)
    assert finished.returncode == 70


def test_rabbitmq_queue_depth_bounds_submissions_and_is_read_at_most_once_per_sample(
    rabbitmq_fault_stack: tuple[RedisServer, RabbitMQServer, list[WorkerProcess]],
    tiny_model_dir: Path,
) -> None:
    """`max_queue_depth` against RabbitMQ's own count of a queue nobody consumes (a passive
    declare), and that count asked for once per `broker_depth_sample_ms`, not per request."""
    from gateway.app import create_app
    from gateway.queue_depth import QueueDepth

    records, broker, _ = rabbitmq_fault_stack
    settings = Settings(
        redis_url=records.url, broker_url=broker.url, model_dir=tiny_model_dir,
        queue_name=f"nobody-consumes-{uuid.uuid4().hex[:8]}", max_queue_depth=2,
        broker_depth_sample_ms=1000,
    )  # fmt: skip
    now = [0.0]
    with TestClient(create_app(settings)) as api:
        state = api.app.state
        state.queue_depth = QueueDepth(settings, state.celery, clock=lambda: now[0])
        statuses = [submit(api, index)[0] for index in range(3)]
        assert statuses == [202, 202, 202]  # the depth read before the first (0) still holds
        now[0] += 1.0  # the next sample
        refused = api.post("/v1/jobs", files={"file": ("x.png", IMAGES[0])})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
        assert "pneumo_queue_depth 3.0" in api.get("/metrics").text


def test_a_publish_rabbitmq_refuses_is_a_503_and_keeps_nothing(
    rabbitmq_fault_stack: tuple[RedisServer, RabbitMQServer, list[WorkerProcess]],
    tiny_model_dir: Path,
) -> None:
    """A queue at its length limit with `reject-publish` nacks the publish: with publisher
    confirms the gateway hears it, answers 503 and takes the stored job back."""
    from gateway.app import create_app

    records, broker, _ = rabbitmq_fault_stack
    queue = f"refusing-{uuid.uuid4().hex[:8]}"
    limit = json.dumps({"max-length": 1, "overflow": "reject-publish"})
    broker.run_ctl("set_policy", f"{queue}-limit", f"^{queue}$", limit, "--apply-to", "queues")
    settings = Settings(redis_url=records.url, broker_url=broker.url, model_dir=tiny_model_dir,
                        queue_name=queue)  # fmt: skip
    client = records.client()
    with TestClient(create_app(settings)) as api:
        jobs_before = len(client.keys("pneumo:job:*"))
        replies = [submit(api, index) for index in range(4)]
    # A quorum queue checks its limit against what it held before each message, not exactly
    # at it: a message or so past the limit may still go in.
    statuses = [status for status, _ in replies]
    print(f"statuses past a 1-message limit: {statuses}")
    assert statuses[0] == 202 and 503 in statuses, statuses
    refused = [body["error"]["code"] for status, body in replies if status == 503]
    assert set(refused) == {"queue_unavailable"}
    assert len(client.keys("pneumo:job:*")) == jobs_before + statuses.count(202)
