"""Micro-batching against a full queue: a worker that starts behind a backlog buffers more
than one batch (it prefetches two), yet every model call stays within the batch size and the
jobs left over from one batch head the next, none stranded. Real Redis and a real worker."""

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


def test_a_backlog_is_served_in_batches_of_at_most_the_batch_size(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    images = [phantom_jpeg(seed=seed, size=160) for seed in range(4)]
    with RedisServer(tmp_path / "redis") as redis:
        drained = drain_queue(redis, tiny_model_dir, images, tmp_path, BATCH_SIZE, JOBS,
                              name="backlog-worker")  # fmt: skip
    assert drained["worker_jobs"] == JOBS and drained["worker_failed"] == 0
    log = (tmp_path / "backlog-worker.log").read_text()
    sizes = [int(size) for size in re.findall(r"Batch of (\d+): \d+ succeeded", log)]
    assert sum(sizes) == JOBS
    assert max(sizes) == BATCH_SIZE, sizes
