"""When a micro-batch is due (`worker.batching.batch_is_due`): full at once; otherwise after
the short wait while jobs come one at a time, and after the longer one while they keep coming.
The worker's batching under a real queue is tested in tests/integration/test_micro_batching.py.
"""

from __future__ import annotations

from worker.batching import batch_is_due

BATCH = 16
WAIT_S, BUSY_WAIT_S, TICK_S = 0.010, 0.050, 0.010


def due(buffered: int, oldest_wait_s: float, previous_batch: int) -> bool:
    return batch_is_due(buffered, BATCH, oldest_wait_s, previous_batch, WAIT_S, BUSY_WAIT_S,
                        TICK_S)  # fmt: skip


def test_an_empty_buffer_is_never_due_and_a_full_one_always() -> None:
    assert not due(0, oldest_wait_s=10.0, previous_batch=1)
    assert due(BATCH, oldest_wait_s=0.0, previous_batch=BATCH)
    assert due(BATCH + 5, oldest_wait_s=0.0, previous_batch=1)


def test_a_lone_job_after_a_lone_job_waits_the_short_wait_only() -> None:
    """A client alone with the service: its job is batched at the first tick, 10 ms on."""
    assert not due(1, oldest_wait_s=0.002, previous_batch=1)
    assert due(1, oldest_wait_s=0.0099, previous_batch=1)  # the tick came a little early
    assert due(1, oldest_wait_s=0.010, previous_batch=0)  # the worker's first batch


def test_while_jobs_keep_coming_a_partial_batch_waits_the_longer_wait() -> None:
    assert not due(5, oldest_wait_s=0.030, previous_batch=6)
    assert due(5, oldest_wait_s=0.046, previous_batch=6)
    assert due(1, oldest_wait_s=0.050, previous_batch=2)


def test_a_busy_wait_set_below_the_short_wait_never_shortens_it() -> None:
    assert not batch_is_due(3, BATCH, 0.004, 8, wait_s=0.010, busy_wait_s=0.0, tick_s=TICK_S)
    assert batch_is_due(3, BATCH, 0.006, 8, wait_s=0.010, busy_wait_s=0.0, tick_s=TICK_S)
