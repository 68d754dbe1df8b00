"""When a micro-batch is due (`worker.batching.batch_is_due`): at once when full, otherwise
once its oldest job has waited for batch-mates. The worker's batching under a real queue is
tested in tests/integration/test_micro_batching.py."""

from __future__ import annotations

from worker.batching import batch_is_due

BATCH = 16
WAIT_S = TICK_S = 0.010


def due(buffered: int, oldest_wait_s: float) -> bool:
    return batch_is_due(buffered, BATCH, oldest_wait_s, WAIT_S, TICK_S)


def test_an_empty_buffer_is_never_due_and_a_full_one_at_once() -> None:
    assert not due(0, oldest_wait_s=10.0)
    assert due(BATCH, oldest_wait_s=0.0) and due(BATCH + 5, oldest_wait_s=0.0)


def test_a_partial_batch_waits_for_batch_mates_then_goes() -> None:
    """What arrived while the previous batch ran (often a job or two) is not sent to the model
    alone at once: a batch of one costs far more CPU per image."""
    assert not due(2, oldest_wait_s=0.001)
    assert due(2, oldest_wait_s=0.010) and due(1, oldest_wait_s=0.5)


def test_a_tick_that_comes_a_little_early_still_ends_the_wait() -> None:
    """The timer ticks every WAIT_S from a job's arrival; one a few microseconds early must not
    make the job wait a whole second interval."""
    assert due(1, oldest_wait_s=WAIT_S - 0.0001)
    assert not due(1, oldest_wait_s=WAIT_S / 2 - 0.0001)
