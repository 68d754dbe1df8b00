"""Long polls wake on the worker's final write (gateway.wakeups), against a real redis-server.

The module has its own redis-server, so it can restart it without disturbing the session's
worker; final states are written as the worker writes them (`SyncStore.write_unless_final`).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from gateway.submission import wait_for_final
from gateway.wakeups import RECHECK_S, FinishedJobs
from shared.config import Settings
from shared.schemas import Job, JobStatus
from shared.store import AsyncStore, Keys, SyncStore, Write, new_job
from tests.support.processes import RedisServer, wait_until

PREFIX = "pneumo"
CHANNEL = Keys(PREFIX).finished_channel
# A wake-up by message takes milliseconds; one by the recheck, about RECHECK_S.
WOKEN_BY_MESSAGE_S = 0.25


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("wakeup-redis")) as server:
        yield server


@pytest.fixture()
def store(own_redis: RedisServer) -> SyncStore:
    return SyncStore.from_url(own_redis.url, PREFIX, 3600)


@pytest.fixture()
def api(own_redis: RedisServer) -> Iterator[TestClient]:
    from gateway.app import create_app

    with TestClient(create_app(Settings(redis_url=own_redis.url, key_prefix=PREFIX))) as client:
        wait_until(lambda: finished_jobs(client).subscribed, 10, "the finished-jobs subscription")
        yield client


def finished_jobs(api: TestClient) -> FinishedJobs:
    finished: FinishedJobs = api.app.state.finished_jobs
    return finished


def seeded_job(store: SyncStore) -> Job:
    job = new_job(str(uuid.uuid4()), 3600)
    store.save([job])
    return job


def finish(store: SyncStore, job: Job) -> bool:
    final = job.model_copy(update={"status": JobStatus.succeeded})
    (landed,) = store.write_unless_final([Write(final)])
    return landed


class LongPoll(threading.Thread):
    """`GET /v1/jobs/{id}?wait=` in a thread, so the test can write while it waits."""

    def __init__(self, api: TestClient, job_id: str, wait_s: float):
        super().__init__(name="long-poll")
        self.api, self.job_id, self.wait_s = api, job_id, wait_s
        self.answered_at = 0.0
        self.body: dict = {}

    def run(self) -> None:
        response = self.api.get(f"/v1/jobs/{self.job_id}", params={"wait": self.wait_s})
        self.answered_at = time.monotonic()
        self.body = response.json()


def finishing_wakes_the_long_poll(api: TestClient, store: SyncStore) -> float:
    """Seconds from the final write landing to the long poll's answer."""
    finished = finished_jobs(api)
    job = seeded_job(store)
    poll = LongPoll(api, job.job_id, wait_s=10)
    poll.start()
    wait_until(lambda: finished.waiting == 1, 5, "the long poll to watch its job")
    time.sleep(0.3)  # off the recheck's beat: a recheck would answer ~0.7 s after the write
    assert finish(store, job)
    written_at = time.monotonic()
    poll.join(15)
    assert poll.body["status"] == "succeeded"
    assert finished.waiting == 0
    return poll.answered_at - written_at


def test_a_final_write_publishes_its_job_once_and_a_refused_write_nothing(
    own_redis: RedisServer, store: SyncStore
) -> None:
    subscriber = own_redis.client().pubsub()
    subscriber.subscribe(CHANNEL)
    confirmation = subscriber.get_message(timeout=5)  # listening from here on
    assert confirmation is not None and confirmation["type"] == "subscribe"
    job = seeded_job(store)
    running = job.model_copy(update={"status": JobStatus.running})
    assert store.write_unless_final([Write(running)]) == [True]  # a claim: not final, silent
    assert finish(store, job)
    assert not finish(store, job)  # already final: refused
    gone = seeded_job(store)
    own_redis.client().delete(Keys(PREFIX).job(gone.job_id))
    assert not finish(store, gone)  # deleted: refused
    messages, deadline = [], time.monotonic() + 0.5
    while time.monotonic() < deadline:
        if message := subscriber.get_message(timeout=0.1):
            messages.append(message["data"])
    subscriber.close()
    assert messages == [job.job_id.encode()]


def test_blobs_still_land_beside_the_channel_argument(
    own_redis: RedisServer, store: SyncStore
) -> None:
    job = seeded_job(store)
    final = job.model_copy(update={"status": JobStatus.succeeded})
    assert store.write_unless_final([Write(final, {"overlay": b"png-1", "heatmap": b"png-2"})])
    client, keys = own_redis.client(), Keys(PREFIX)
    assert client.get(keys.blob(job.job_id, "overlay")) == b"png-1"
    assert client.get(keys.blob(job.job_id, "heatmap")) == b"png-2"


def test_a_long_poll_answers_within_milliseconds_of_the_final_write(
    api: TestClient, store: SyncStore
) -> None:
    latency = finishing_wakes_the_long_poll(api, store)
    print(f"final write -> long-poll answer: {latency * 1000:.1f} ms")
    assert latency < WOKEN_BY_MESSAGE_S < RECHECK_S


def test_a_long_poll_times_out_with_the_unfinished_job_and_leaves_no_waiter(
    api: TestClient, store: SyncStore
) -> None:
    job = seeded_job(store)
    started = time.monotonic()
    response = api.get(f"/v1/jobs/{job.job_id}", params={"wait": 1.5})
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert response.headers["Retry-After"] == "1"
    assert 1.5 <= elapsed < 2.5
    assert finished_jobs(api).waiting == 0


def test_a_final_state_written_without_a_message_is_seen_at_the_recheck(
    api: TestClient, store: SyncStore
) -> None:
    """A lost message (here: an unconditional write, which publishes nothing) costs at most
    the recheck interval, never the whole wait."""
    job = seeded_job(store)
    poll = LongPoll(api, job.job_id, wait_s=10)
    poll.start()
    time.sleep(0.2)
    store.save([job.model_copy(update={"status": JobStatus.succeeded})])
    written_at = time.monotonic()
    poll.join(15)
    assert poll.body["status"] == "succeeded"
    assert poll.answered_at - written_at < RECHECK_S + 0.5


def test_the_message_wakes_the_waiter_not_the_recheck(own_redis: RedisServer) -> None:
    """With rechecks every 30 s, only the published message can answer within the test."""
    sync_store = SyncStore.from_url(own_redis.url, PREFIX, 3600)
    job = seeded_job(sync_store)

    async def scenario() -> tuple[Job, float, int]:
        store = AsyncStore(aioredis.Redis.from_url(own_redis.url), PREFIX, 3600)
        finished = FinishedJobs(own_redis.url, CHANNEL, recheck_s=30)
        finished.start()
        try:
            while not finished.subscribed:
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(wait_for_final(store, finished, job, 20))
            await asyncio.sleep(0.3)
            assert finished.waiting == 1
            await asyncio.to_thread(finish, sync_store, job)
            written_at = time.monotonic()
            answer = await waiting
            return answer, time.monotonic() - written_at, finished.waiting
        finally:
            await finished.stop()
            await store.client.aclose()

    answer, latency, left_waiting = asyncio.run(scenario())
    assert answer.status is JobStatus.succeeded
    assert latency < WOKEN_BY_MESSAGE_S
    assert left_waiting == 0


def test_a_cancelled_or_timed_out_long_poll_leaves_no_waiter(own_redis: RedisServer) -> None:
    sync_store = SyncStore.from_url(own_redis.url, PREFIX, 3600)
    jobs = [seeded_job(sync_store) for _ in range(3)]

    async def scenario() -> list[int]:
        store = AsyncStore(aioredis.Redis.from_url(own_redis.url), PREFIX, 3600)
        finished = FinishedJobs(own_redis.url, CHANNEL)
        finished.start()
        try:
            polls = [asyncio.create_task(wait_for_final(store, finished, job, 30)) for job in jobs]
            await asyncio.sleep(0.2)
            counts = [finished.waiting]
            for poll in polls:  # a client that hung up: its request task is cancelled
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
            counts.append(finished.waiting)
            timed_out = await wait_for_final(store, finished, jobs[0], 0.3)
            assert timed_out.status is JobStatus.queued
            counts.append(finished.waiting)
            return counts
        finally:
            await finished.stop()
            await store.client.aclose()

    assert asyncio.run(scenario()) == [3, 0, 0]


def test_after_redis_restarts_the_subscriber_reconnects_and_wake_ups_work_again(
    api: TestClient, store: SyncStore, own_redis: RedisServer
) -> None:
    finished = finished_jobs(api)
    before = finished.subscriptions
    own_redis.stop()
    try:
        wait_until(lambda: not finished.subscribed, 10, "the subscriber to notice Redis left")
        time.sleep(1.0)  # a few failed reconnects: the task must survive them
    finally:
        own_redis.start()
    wait_until(lambda: finished.subscriptions > before, 10, "the subscriber to reconnect")
    latency = finishing_wakes_the_long_poll(api, store)
    assert latency < WOKEN_BY_MESSAGE_S
