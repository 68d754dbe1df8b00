"""Fault-test helpers: tally job outcomes in Redis, freeze a worker mid-batch, restart Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from bench.rabbitmq import RabbitMQServer
from tests.support.processes import RedisServer, WorkerProcess, wait_until


@dataclass(frozen=True)
class Tally:
    submitted: int
    succeeded: int
    failed: int
    lost: int
    duplicated: int

    def line(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.__dict__.items())


def records(client: redis.Redis, job_ids: list[str]) -> list[dict]:
    raw = client.mget([f"pneumo:job:{job_id}" for job_id in job_ids])
    return [json.loads(record) if record else {"status": "missing"} for record in raw]


def all_final(client: redis.Redis, job_ids: list[str]) -> bool:
    return all(job["status"] in ("succeeded", "failed") for job in records(client, job_ids))


def tally(client: redis.Redis, job_ids: list[str]) -> Tally:
    statuses = [job["status"] for job in records(client, job_ids)]
    final_writes = client.mget([f"pneumo:finals:{job_id}" for job_id in job_ids])
    return Tally(
        submitted=len(job_ids),
        succeeded=statuses.count("succeeded"),
        failed=statuses.count("failed"),
        lost=sum(status not in ("succeeded", "failed") for status in statuses),
        duplicated=sum(int(count or 0) > 1 for count in final_writes),
    )


def finish_and_tally(client: redis.Redis, job_ids: list[str], timeout_s: float) -> Tally:
    try:
        wait_until(lambda: all_final(client, job_ids), timeout_s, "every accepted job to finish")
    except TimeoutError:
        print(f"\nNot final: {unfinished_report(client, job_ids)}")  # counted as lost below
    result = tally(client, job_ids)
    print(f"\n{result.line()}")
    return result


def unfinished_report(client: redis.Redis, job_ids: list[str]) -> list[dict]:
    """Where each unfinished job's message is: waiting in the queue, unacknowledged, or nowhere."""
    queued = b"".join(client.lrange("pneumo", 0, -1))
    unacked = b"".join(client.hvals("unacked"))
    return [
        {**{key: job.get(key) for key in ("job_id", "status", "attempts", "started_at")},
         "in_queue": job_id.encode() in queued, "unacked": job_id.encode() in unacked}
        for job_id, job in zip(job_ids, records(client, job_ids), strict=True)
        if job["status"] not in ("succeeded", "failed")
    ]  # fmt: skip


def running_jobs(client: redis.Redis, job_ids: list[str]) -> set[str]:
    return {
        job_id
        for job_id, job in zip(job_ids, records(client, job_ids), strict=True)
        if job["status"] == "running"
    }


@contextmanager
def paused(workers: list[WorkerProcess]) -> Iterator[None]:
    """SIGSTOP the workers for the block (a backlog builds up), then let them go on."""
    for worker in workers:
        assert worker.process is not None
        os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            assert worker.process is not None
            os.killpg(worker.process.pid, signal.SIGCONT)


def freeze_mid_batch(victim: WorkerProcess, client: redis.Redis, job_ids: list[str]) -> set[str]:
    """SIGSTOP the victim while it holds a batch it has claimed; return that batch's jobs.

    Jobs still `running` after the other worker has had seconds to finish its own batch
    (which takes well under one) are the frozen victim's. The victim is frozen first and
    looked at second: a worker that no longer decodes or draws holds a claimed batch for a few
    milliseconds at a time, which polling from outside, then stopping, kept missing.
    """
    assert victim.process is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        os.killpg(victim.process.pid, signal.SIGSTOP)
        held = running_jobs(client, job_ids)
        if held:
            time.sleep(3)
            held &= running_jobs(client, job_ids)
            if held:
                return held
        os.killpg(victim.process.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("The victim never held a claimed batch.")


def restart_after(
    server: RedisServer | RabbitMQServer, delay_s: float, down_s: float
) -> threading.Thread:
    def restart() -> None:
        time.sleep(delay_s)
        # SIGTERM: Redis flushes the AOF, RabbitMQ shuts down cleanly, as `docker compose
        # restart` would stop either.
        server.stop()
        time.sleep(down_s)
        server.start()

    thread = threading.Thread(target=restart, name="redis-restart")
    thread.start()
    return thread


def sweeper_requeues(workers: list[WorkerProcess]) -> int:
    """Jobs the workers' sweepers have queued again so far (worker.serving.recovery logs each
    sweep)."""
    pattern = re.compile(r"Queued (\d+) unfinished jobs again")
    return sum(int(count) for worker in workers for count in pattern.findall(worker.log_text()))
