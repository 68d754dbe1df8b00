"""`python -m bench.enqueue`: what storing and queueing one job costs a gateway, side by side.

Both ways store the same job (record, upload, display copy, model input: a benchmark film's
sizes) through `AsyncStore.create`, from one event loop at a gateway's concurrency, against a
Redis of their own:

- **Celery's publish**: `enqueue_predict` in the default thread pool after the store, as the
  gateway does for a broker other than the records' Redis (RabbitMQ, another Redis);
- **with the record**: the message (`shared.queue.predict_message`) pushed in the store's own
  transaction, as the gateway does when the broker is the records' Redis (the default).

The two take turns, one pass each per round; the median round of each is reported. CPU per
job is `time.process_time` of this process (event loop and thread pool), so Redis's own work
is not in it; the jobs are deleted between passes, so Redis stays as small as at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery

from bench.processes import RedisServer
from shared.config import Settings
from shared.queue import enqueue_predict, make_celery, predict_message
from shared.store import AsyncStore, new_job

# A 1,000 px benchmark film's blobs (bench/RESULTS.md): upload, display copy, model input.
BLOB_BYTES = {"upload": 145_000, "display": 145_000, "input": 16_500}


async def _store_jobs(store: AsyncStore, settings: Settings, celery: Celery, jobs: int,
                      concurrency: int, with_record: bool) -> None:  # fmt: skip
    gate = asyncio.Semaphore(concurrency)
    blobs = {name: bytes(size) for name, size in BLOB_BYTES.items()}

    async def one() -> None:
        async with gate:
            job = new_job(str(uuid.uuid4()), settings.job_ttl_s)
            extras = {"display": blobs["display"]}
            if with_record:
                queued = (settings.queue_name, predict_message(celery, settings, job.job_id))
                await store.create(job, blobs["upload"], {}, blobs["input"], extras, queued)
            else:
                await store.create(job, blobs["upload"], {}, blobs["input"], extras)
                await asyncio.to_thread(enqueue_predict, celery, settings, job.job_id)

    await asyncio.gather(*(one() for _ in range(jobs)))


async def measure(redis: RedisServer, jobs: int, concurrency: int, rounds: int) -> dict:
    settings = Settings(redis_url=redis.url)
    celery = make_celery(settings, "pneumo-gateway")
    store = AsyncStore.from_url(redis.url, settings.key_prefix, settings.job_ttl_s)
    client = redis.client()
    cpu_ms: dict[str, list[float]] = {"celery_publish": [], "with_record": []}
    wall_ms: dict[str, list[float]] = {"celery_publish": [], "with_record": []}
    try:
        await _store_jobs(store, settings, celery, concurrency, concurrency, True)  # warm both
        await _store_jobs(store, settings, celery, concurrency, concurrency, False)
        for _ in range(rounds):
            for name in cpu_ms:
                cpu, wall = time.process_time(), time.perf_counter()
                await _store_jobs(store, settings, celery, jobs, concurrency,
                                  with_record=name == "with_record")  # fmt: skip
                cpu_ms[name].append((time.process_time() - cpu) * 1000.0 / jobs)
                wall_ms[name].append((time.perf_counter() - wall) * 1000.0 / jobs)
                assert client.llen(settings.queue_name) >= jobs  # every job queued
                client.flushdb()
    finally:
        await store.aclose()
    medians = {name: statistics.median(values) for name, values in cpu_ms.items()}
    return {
        "jobs_per_pass": jobs, "concurrency": concurrency, "rounds": rounds,
        "cpu_ms_per_job": {name: round(value, 3) for name, value in medians.items()},
        "jobs_per_s": {name: round(1000.0 / statistics.median(values), 1)
                       for name, values in wall_ms.items()},
        "with_record_over_celery_publish": round(
            medians["with_record"] / medians["celery_publish"], 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per pass")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    with RedisServer(Path(tempfile.mkdtemp(prefix="pneumo-bench-enqueue-"))) as redis:
        results = asyncio.run(measure(redis, arguments.jobs, arguments.concurrency,
                                       arguments.rounds))  # fmt: skip
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
