"""The body budget's rule (gateway.request_body), on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.request_body import BodyBudget, BodyRefused


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_byte_received_moves_the_deadline_by_one_over_the_rate() -> None:
    clock = Clock()
    budget = BodyBudget(limit_bytes=10_000, timeout_s=5.0, min_rate=1000.0, clock=clock)
    assert budget.seconds_left() == pytest.approx(5.0)
    budget.count(3000)  # three seconds more
    clock.now += 7.0
    assert budget.seconds_left() == pytest.approx(1.0)


def test_a_trickle_runs_out_of_time_and_a_fast_client_does_not() -> None:
    clock = Clock()
    trickle = BodyBudget(limit_bytes=10**9, timeout_s=30.0, min_rate=16384.0, clock=clock)
    fast = BodyBudget(limit_bytes=10**9, timeout_s=30.0, min_rate=16384.0, clock=clock)
    for _ in range(60):  # a minute: 3 bytes a second against 64 KiB a second
        clock.now += 1.0
        trickle.count(3)
        fast.count(65536)
    assert trickle.seconds_left() < 0 < fast.seconds_left()
    refusal = trickle.too_slow()
    assert refusal.failure.status == 408 and refusal.headers == {"Connection": "close"}


def test_the_limit_is_refused_on_the_byte_that_passes_it() -> None:
    budget = BodyBudget(limit_bytes=100, timeout_s=1.0, min_rate=1.0, clock=Clock())
    budget.count(100)
    with pytest.raises(BodyRefused) as refused:
        budget.count(1)
    assert refused.value.failure.code == "upload_too_large"
    assert refused.value.status_code == 413
