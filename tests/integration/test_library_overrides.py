"""A worker with our kombu and celery-batches overrides off (`PNEUMO_LIBRARY_OVERRIDES=off`,
what `auto` falls back to on other library versions) serves a queue through the libraries'
own code: kombu's transport and celery-batches' `Batches`. Real Redis and a real worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.run import drain_queue
from tests.support.images import phantom_jpeg
from tests.support.processes import RedisServer

pytestmark = pytest.mark.slow

BATCH_SIZE = 4
JOBS = 12


def test_a_worker_on_the_libraries_own_code_serves_every_job(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    images = [phantom_jpeg(seed=seed, size=160) for seed in range(2)]
    stock = {"PNEUMO_LIBRARY_OVERRIDES": "off"}
    with RedisServer(tmp_path / "redis") as redis:
        drained = drain_queue(redis, tiny_model_dir, images, tmp_path, BATCH_SIZE, JOBS,
                              name="stock-worker", settings=stock)  # fmt: skip
        calls = redis.client().info("commandstats")
        unacked_records = redis.client().hlen("unacked")
    assert drained["worker_jobs"] == JOBS and drained["worker_failed"] == 0
    # kombu's own transport: one BRPOP per message (ours pops many with BLMPOP on this Redis),
    # and one transaction records each message, another erases it (ours: one per pop, batch).
    assert "cmdstat_blmpop" not in calls and calls["cmdstat_brpop"]["calls"] >= JOBS
    assert calls["cmdstat_exec"]["calls"] >= 2 * JOBS and unacked_records == 0
    log = (tmp_path / "stock-worker.log").read_text()
    assert "Library overrides running: none" in log
    sizes = [int(size) for size in re.findall(r"Batch of (\d+): \d+ succeeded", log)]
    assert sum(sizes) == JOBS and max(sizes) <= BATCH_SIZE, sizes
