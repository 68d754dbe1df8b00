"""Overload is answered, not crashed on: a full Redis, and bursts larger than the Redis pool.

The full-Redis scenario gets its own redis-server with a `maxmemory` of a few MB (policy
noeviction, as deploy/redis/redis.conf ships), one worker and one gateway as real processes.
Sixteen clients flood the gateway while the worker is paused, so the backlog reaches the
gateway's watermark; then Redis's `maxmemory` is cut below what it holds (full, as far as any
write can tell) and the worker let go, so its own writes are refused; then memory is freed.
It prints how the answers split, and `submitted= succeeded= failed= lost= duplicated=` for
the accepted jobs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.faults import Tally, finish_and_tally, paused
from tests.support.images import phantom_png
from tests.support.processes import (
    GatewayProcess,
    RedisServer,
    UvicornProcess,
    WorkerProcess,
    wait_for_workers,
    wait_until,
    worker_environment,
)

pytestmark = pytest.mark.slow

CLIENTS = 16
REQUESTS_PER_CLIENT = 20
# Room for jobs above what Redis holds at rest; with the watermark at 0.8 of maxmemory the
# gateway refuses long before it is all taken, whatever a job weighs on this machine.
JOB_ROOM_BYTES = 2 * 1024 * 1024
WATERMARK = 0.8
VISIBILITY_S = 10  # a batch that could not be handed back returns through the sweeper soon
IMAGES = [phantom_png(seed=seed, size=96) for seed in range(8)]


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("small-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def full_stack(
    small_redis: RedisServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[UvicornProcess, WorkerProcess]]:
    environment = worker_environment(
        small_redis.url, tiny_model_dir, PNEUMO_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S),
        PNEUMO_BATCH_SOFT_TIME_LIMIT_S="5", PNEUMO_BATCH_HARD_TIME_LIMIT_S="8",
        PNEUMO_STORE_MEMORY_WATERMARK=str(WATERMARK), PNEUMO_STORE_MEMORY_SAMPLE_MS="50",
    )  # fmt: skip
    logs = tmp_path_factory.mktemp("overload-logs")
    worker = WorkerProcess(environment, logs / "worker.log", name="overload").start()
    gateway = UvicornProcess("gateway.app:create_app", environment, logs / "gateway.log",
                             factory=True)  # fmt: skip
    try:
        wait_for_workers(small_redis.client(), 1, timeout_s=180, processes=[worker])
        gateway.start()
        yield gateway, worker
    finally:
        gateway.stop()
        worker.stop()


def flood(url: str, index_base: int = 0) -> list[httpx.Response]:
    """CLIENTS concurrent clients, REQUESTS_PER_CLIENT submissions each, no retries."""

    def client(number: int) -> list[httpx.Response]:
        with httpx.Client(base_url=url, timeout=60) as http:
            return [
                http.post("/v1/jobs", files={"file": ("x.png", IMAGES[(number + n) % 8])})
                for n in range(REQUESTS_PER_CLIENT)
            ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = pool.map(client, range(index_base, index_base + CLIENTS))
        return [response for batch in answers for response in batch]


def job_ids_in(client: redis.Redis) -> set[str]:
    """Every job id any job key names: records, blobs, counters."""
    pattern = re.compile(rb"^pneumo:(?:job|blob|finals|refs):([0-9a-f-]{36})")
    return {match.group(1).decode() for key in client.scan_iter("pneumo:*", count=1000)
            if (match := pattern.match(key))}  # fmt: skip


def test_a_full_redis_is_an_overload_not_a_crash(
    small_redis: RedisServer, full_stack: tuple[UvicornProcess, WorkerProcess]
) -> None:
    gateway, worker = full_stack
    client = small_redis.client()
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + JOB_ROOM_BYTES)
    with paused([worker]):  # a backlog the worker cannot drain: the watermark must hold it
        answers = flood(gateway.url)
        statuses = Counter(response.status_code for response in answers)
        accepted = [answer.json()["job_id"] for answer in answers if answer.status_code == 202]
        refused = [response for response in answers if response.status_code == 503]
        print(f"\nflood: {dict(statuses)}")
        assert set(statuses) == {202, 503}, statuses
        assert {response.json()["error"]["code"] for response in refused} == {"store_full"}
        assert all(int(response.headers["Retry-After"]) > 0 for response in refused)
        assert job_ids_in(client) == set(accepted)  # a refused submission left nothing
        # Full for good, until raised again: a Redis that fills to the brim by itself gains a
        # little room whenever a client's buffers shrink, and a final write that lands then
        # frees more (it drops its upload), which would let the worker slip through.
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", b"1")
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            at_the_brim = http.post("/v1/jobs", files={"file": ("x.png", IMAGES[0])})
            polled = http.get(f"/v1/jobs/{accepted[0]}")
        assert at_the_brim.status_code == 503 and polled.status_code == 200
    # Let go into a full Redis: its claims are refused, batch after batch, the pause doubling.
    refusals = re.compile(r"handed back in (\d+) s: OutOfMemoryError")
    wait_until(lambda: len(refusals.findall(worker.log_text())) >= 2, 60, "two refused batches")
    assert refusals.findall(worker.log_text())[:2] == ["1", "2"]
    assert worker.process is not None and worker.process.poll() is None, worker.log_text()[-3000:]
    assert gateway.process is not None and gateway.process.poll() is None
    client.config_set("maxmemory", 0)  # memory freed
    result = finish_and_tally(client, accepted, timeout_s=4 * VISIBILITY_S + 90)
    print(f"accepted: {len(accepted)}; refused: {len(refused)}")
    assert result == Tally(len(accepted), len(accepted), 0, 0, 0)
    assert job_ids_in(client) == set(accepted)  # nothing orphaned on the way
    assert client.zcard("pneumo:pending") == 0
    assert worker.process.poll() is None and gateway.process.poll() is None
    assert "Unrecoverable error" not in worker.log_text()


async def burst(url: str, job_id: str) -> Counter[int]:
    """1,000 concurrent GETs and 300 concurrent long polls, all at once."""
    limits = httpx.Limits(max_connections=1400, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        gets = [http.get(f"/v1/jobs/{job_id}") for _ in range(1000)]
        polls = [http.get(f"/v1/jobs/{job_id}", params={"wait": 2}) for _ in range(300)]
        answers = await asyncio.gather(*gets, *polls)
    return Counter(response.status_code for response in answers)


def test_bursts_queue_for_the_redis_pool_rather_than_fail(
    gateway: GatewayProcess, redis_server: RedisServer
) -> None:
    """The shipped pool (100 connections, 5 s wait) against a burst ten times its size."""
    from shared.store import SyncStore, new_job

    job = new_job(str(uuid.uuid4()), 600)  # queued for good: nothing enqueues it
    SyncStore.from_url(redis_server.url, "pneumo", 600).save([job])
    statuses = asyncio.run(burst(gateway.url, job.job_id))
    print(f"\nburst: {dict(statuses)}")
    assert statuses == Counter({200: 1300})


def test_the_watermark_reads_redis_at_most_once_per_interval(redis_server: RedisServer) -> None:
    """However many submissions ask, one `INFO memory` per sampling interval (a manual clock)."""
    import redis.asyncio as aioredis

    from shared.store import MemoryWatermark

    now = [0.0]
    client = redis_server.client()
    used = int(client.info("memory")["used_memory"])
    watermark = MemoryWatermark(0.5, sample_interval_s=0.25, clock=lambda: now[0])

    def info_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    async def scenario() -> int:  # one event loop, as in a gateway process
        async with aioredis.Redis.from_url(redis_server.url) as requests:

            async def ask(times: int) -> list[bool]:
                return list(
                    await asyncio.gather(*(watermark.is_high(requests) for _ in range(times)))
                )

            client.config_set("maxmemory", 10 * used)  # far below half full
            before = info_calls()
            assert await ask(50) == [False] * 50
            client.config_set("maxmemory", used + used // 2)  # over half full, not yet read
            assert await ask(50) == [False] * 50
            now[0] += 0.25
            assert await ask(50) == [True] * 50
            client.config_set("maxmemory", 0)  # no limit: never high
            now[0] += 0.25
            assert await ask(1) == [False]
            return info_calls() - before

    # Our three reads, plus this test's own INFO call in between.
    assert asyncio.run(scenario()) == 3 + 1
