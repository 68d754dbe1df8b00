"""Long polls wake on the worker's final write (gateway.wakeups), against a real redis-server.

The module has its own redis-server, so it can restart it without disturbing the session's
worker; final states are written as the worker writes them (`SyncStore.write_unless_final`).
Time is a `ManualClock`: a recheck or a timeout happens when the test moves the clock, so
"woken by the message" means "answered while time stood still", with no wall-clock threshold.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from random import Random

import pytest
from fastapi.testclient import TestClient

from gateway.submission import wait_for_final
from gateway.wakeups import BACKOFF_MAX_S, RECHECK_S, FinishedJobs
from shared.config import Settings
from shared.schemas import Job, JobStatus
from shared.store import AsyncStore, Keys, SyncStore, Write, new_job
from tests.support.clocks import ManualClock
from tests.support.processes import RedisServer, wait_until

PREFIX = "pneumo"
CHANNEL = Keys(PREFIX).finished_channel


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("wakeup-redis")) as server:
        yield server


@pytest.fixture()
def store(own_redis: RedisServer) -> SyncStore:
    return SyncStore.from_url(own_redis.url, PREFIX, 3600)


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def api(own_redis: RedisServer, clock: ManualClock) -> Iterator[TestClient]:
    from gateway.app import create_app

    with TestClient(create_app(Settings(redis_url=own_redis.url, key_prefix=PREFIX))) as client:
        finished_jobs(client).clock = clock
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
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self.body: dict = {}

    def run(self) -> None:
        response = self.api.get(f"/v1/jobs/{self.job_id}", params={"wait": self.wait_s})
        self.status_code, self.headers = response.status_code, dict(response.headers)
        self.body = response.json()


def waiting_long_poll(api: TestClient, store: SyncStore, clock: ManualClock, wait_s: float):
    """A long poll on a new queued job, started and waiting on the clock; and the index of
    its first wait in `clock.requested`."""
    job = seeded_job(store)
    first_wait = len(clock.requested)
    poll = LongPoll(api, job.job_id, wait_s)
    poll.start()
    clock.wait_for_timers(1, started=first_wait + 1)
    return job, poll, first_wait


def finishing_wakes_the_long_poll(api: TestClient, store: SyncStore, clock: ManualClock) -> None:
    """The final write's message answers the poll while the clock stands still: one wait,
    never timed out."""
    job, poll, first_wait = waiting_long_poll(api, store, clock, wait_s=10)
    assert finish(store, job)
    poll.join(15)
    assert poll.body["status"] == "succeeded"
    assert clock.requested[first_wait:] == [RECHECK_S]
    assert finished_jobs(api).waiting == 0


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
    # Redis delivers in publishing order, so whatever the writes published arrives before this.
    own_redis.client().publish(CHANNEL, b"end-of-test")
    messages = []
    while (message := subscriber.get_message(timeout=5)) and message["data"] != b"end-of-test":
        messages.append(message["data"])
    subscriber.close()
    assert message is not None, "the end-of-test message never came"
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


def test_a_long_poll_answers_on_the_final_writes_message_not_a_recheck(
    api: TestClient, store: SyncStore, clock: ManualClock
) -> None:
    finishing_wakes_the_long_poll(api, store, clock)


def test_a_long_poll_times_out_with_the_unfinished_job_and_leaves_no_waiter(
    api: TestClient, store: SyncStore, clock: ManualClock
) -> None:
    _, poll, first_wait = waiting_long_poll(api, store, clock, wait_s=1.5)
    clock.advance(RECHECK_S)  # the recheck finds it queued, and waits out the rest
    clock.wait_for_timers(1, started=first_wait + 2)
    assert poll.is_alive()
    clock.advance(0.5)
    poll.join(15)
    assert poll.status_code == 200 and poll.body["status"] == "queued"
    assert poll.headers["retry-after"] == "1"
    assert clock.requested[first_wait:] == pytest.approx([RECHECK_S, 0.5])
    assert finished_jobs(api).waiting == 0


def test_a_final_state_written_without_a_message_is_seen_at_the_recheck(
    api: TestClient, store: SyncStore, clock: ManualClock
) -> None:
    """A lost message (here: an unconditional write, which publishes nothing) costs at most
    the recheck interval, never the whole wait."""
    job, poll, first_wait = waiting_long_poll(api, store, clock, wait_s=10)
    store.save([job.model_copy(update={"status": JobStatus.succeeded})])
    assert poll.is_alive()  # nothing wakes it before the recheck
    clock.advance(RECHECK_S)
    poll.join(15)
    assert poll.body["status"] == "succeeded"
    assert clock.requested[first_wait:] == [RECHECK_S]


async def until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Waits for an event in the app's loop (with a generous timeout), not for time to pass."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_the_message_wakes_the_waiter_not_the_recheck(own_redis: RedisServer) -> None:
    sync_store, clock = SyncStore.from_url(own_redis.url, PREFIX, 3600), ManualClock()
    job = seeded_job(sync_store)

    async def scenario() -> tuple[Job, int]:
        store = AsyncStore.from_url(own_redis.url, PREFIX, 3600)
        finished = FinishedJobs(store, clock=clock)
        finished.start()
        try:
            await until(lambda: finished.subscribed)
            waiting = asyncio.create_task(wait_for_final(store, finished, job, 20))
            await until(lambda: clock.running_timers == 1)
            assert finished.waiting == 1
            await asyncio.to_thread(finish, sync_store, job)
            answer = await asyncio.wait_for(waiting, 15)
            return answer, finished.waiting
        finally:
            await finished.stop()
            await store.aclose()

    answer, left_waiting = asyncio.run(scenario())
    assert answer.status is JobStatus.succeeded
    assert clock.requested == [RECHECK_S]  # one wait, ended by the message
    assert left_waiting == 0


def test_a_cancelled_or_timed_out_long_poll_leaves_no_waiter(own_redis: RedisServer) -> None:
    sync_store, clock = SyncStore.from_url(own_redis.url, PREFIX, 3600), ManualClock()
    jobs = [seeded_job(sync_store) for _ in range(3)]

    async def scenario() -> list[int]:
        store = AsyncStore.from_url(own_redis.url, PREFIX, 3600)
        finished = FinishedJobs(store, clock=clock)
        finished.start()
        try:
            polls = [asyncio.create_task(wait_for_final(store, finished, job, 30)) for job in jobs]
            await until(lambda: clock.running_timers == 3)
            counts = [finished.waiting]
            for poll in polls:  # a client that hung up: its request task is cancelled
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
            counts.append(finished.waiting)
            timing_out = asyncio.create_task(wait_for_final(store, finished, jobs[0], 0.3))
            await until(lambda: clock.running_timers == 1)
            clock.advance(0.3)
            assert (await asyncio.wait_for(timing_out, 15)).status is JobStatus.queued
            counts.append(finished.waiting)
            return counts
        finally:
            await finished.stop()
            await store.aclose()

    assert asyncio.run(scenario()) == [3, 0, 0]


def test_after_redis_restarts_the_subscriber_reconnects_and_wake_ups_work_again(
    api: TestClient, store: SyncStore, own_redis: RedisServer, clock: ManualClock
) -> None:
    finished = finished_jobs(api)
    before, first_backoff = finished.subscriptions, len(clock.requested)
    own_redis.stop()
    try:
        wait_until(lambda: not finished.subscribed, 10, "the subscriber to notice Redis left")
        for failures in range(1, 4):  # a few failed reconnects: the task must survive them
            clock.wait_for_timers(1, started=first_backoff + failures)
            clock.advance(BACKOFF_MAX_S)
    finally:
        own_redis.start()
    clock.wait_for_timers(1, started=first_backoff + 4)
    clock.advance(BACKOFF_MAX_S)
    wait_until(lambda: finished.subscriptions > before, 10, "the subscriber to reconnect")
    finishing_wakes_the_long_poll(api, store, clock)


def test_stop_ends_the_listener_even_when_redis_py_swallows_the_cancellation(
    own_redis: RedisServer,
) -> None:
    """On Python 3.11 a cancel that lands as one of redis-py's `wait_for` socket operations
    completes is dropped, and the listener went on for ever: a gateway's shutdown, and CI,
    hung in `stop`. Started and stopped at random moments, with reads that time out every
    2 ms so that cancels often land beside a completing operation, every stop must end."""
    random = Random(7)

    async def start_and_stop(cycles: int) -> int:
        stopped = 0
        for _ in range(cycles):
            store = AsyncStore.from_url(own_redis.url, PREFIX, 3600)
            finished = FinishedJobs(store, listen_timeout_s=0.002)
            finished.start()
            await asyncio.sleep(random.uniform(0, 0.01))
            try:
                # shield: a listener that ignores cancels would also ignore the timeout's.
                await asyncio.wait_for(asyncio.shield(finished.stop()), 10)
                stopped += 1
            finally:
                await store.aclose()
        return stopped

    assert asyncio.run(start_and_stop(200)) == 200
