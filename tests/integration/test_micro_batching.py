"""Micro-batching against a full queue: a worker that starts behind a backlog buffers more
than one batch (it prefetches two, six with two in flight), yet every model call stays
within the batch size and the jobs left over from one batch head the next, none stranded. As
deployed on a CPU, and with the GPU worker's settings (two batches in flight, many messages
per Redis round trip, no ack emulation); and on kombu's and celery-batches' own code, where our
overrides of them are off. Real Redis and a real worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.run import drain_queue
from tests.support.images import phantom_jpeg
from tests.support.processes import RedisServer

pytestmark = pytest.mark.slow

BATCH_SIZE = 4
JOBS = 40


GPU_SETTINGS = {
    "PNEUMO_BATCHES_IN_FLIGHT": "2",
    "PNEUMO_BROKER_MULTI_POP": "true",
    "PNEUMO_BROKER_ACK_EMULATION": "false",
}


def drain_backlog(
    model_dir: Path, tmp_path: Path, settings: dict[str, str]
) -> tuple[dict, int, list[int], str]:
    """A worker started behind JOBS queued jobs: Redis' command counts, the unacknowledged
    records left, the worker's batch sizes and its log."""
    images = [phantom_jpeg(seed=seed, size=160) for seed in range(4)]
    with RedisServer(tmp_path / "redis") as redis:
        drained = drain_queue(redis, model_dir, images, tmp_path, BATCH_SIZE, JOBS,
                              name="backlog-worker", settings=settings)  # fmt: skip
        calls = redis.client().info("commandstats")
        unacked_records = redis.client().hlen("unacked")
    assert drained["worker_jobs"] == JOBS and drained["worker_failed"] == 0
    log = (tmp_path / "backlog-worker.log").read_text()
    sizes = [int(size) for size in re.findall(r"Batch of (\d+): \d+ succeeded", log)]
    assert sum(sizes) == JOBS
    return calls, unacked_records, sizes, log


@pytest.mark.parametrize("settings", [{}, GPU_SETTINGS], ids=["cpu_defaults", "gpu_settings"])
def test_a_backlog_is_served_in_batches_of_at_most_the_batch_size(
    tiny_model_dir: Path, tmp_path: Path, settings: dict[str, str]
) -> None:
    calls, unacked_records, sizes, _ = drain_backlog(tiny_model_dir, tmp_path, settings)
    # Both receive through worker.serving.transport: many messages per pop (this Redis has BLMPOP).
    assert "cmdstat_brpop" not in calls and calls["cmdstat_blmpop"]["calls"] < JOBS
    assert max(sizes) == BATCH_SIZE, sizes
    if not settings:
        # Ack emulation, batched: one transaction records each pop's messages and erasing a
        # turn's records is one pipelined round trip, not a transaction. kombu's own writes two
        # transactions per message (the stock test below); ours stay under that even when a
        # busy machine leaves each pop a single message, and every record is erased.
        assert calls["cmdstat_exec"]["calls"] < 2 * JOBS, calls["cmdstat_exec"]
        assert unacked_records == 0


def test_with_the_library_overrides_off_the_libraries_own_code_serves_the_backlog(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """What a worker falls back to on other kombu or celery-batches versions
    (worker.serving.overrides): kombu's own transport and celery-batches' own Batches."""
    stock = {"PNEUMO_LIBRARY_OVERRIDES": "off"}
    calls, unacked_records, sizes, log = drain_backlog(tiny_model_dir, tmp_path, stock)
    assert "Library overrides running: none" in log
    # kombu's own transport: a BRPOP per message, and per message one transaction records it
    # and another erases the record.
    assert "cmdstat_blmpop" not in calls and calls["cmdstat_brpop"]["calls"] >= JOBS
    assert calls["cmdstat_exec"]["calls"] >= 2 * JOBS and unacked_records == 0
    assert max(sizes) <= BATCH_SIZE, sizes
