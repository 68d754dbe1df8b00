"""The decode memory budget: reservations never add up past the capacity, are granted in
arrival order, and a wait that runs out is a 503 with Retry-After. Threads and tasks are
coordinated with events, never with sleeps."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.decode_budget import AsyncDecodeBudget, DecodeBudget
from shared.errors import DecodeBusy, TooManyPixels
from tests.support.processes import wait_until

GENEROUS_S = 30.0


def test_threads_never_hold_more_than_the_capacity_together() -> None:
    budget = DecodeBudget(100)
    costs = [60, 30, 50, 10, 90, 40, 20, 70] * 4
    peak, lock = [0], threading.Lock()

    def decode(cost: int) -> None:
        with budget.reserve(cost):
            with lock:
                peak[0] = max(peak[0], budget.in_use)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decode, costs))
    assert 0 < peak[0] <= 100
    assert budget.in_use == 0


def test_a_waiting_thread_is_admitted_when_memory_is_given_back() -> None:
    budget = DecodeBudget(100)
    admitted = threading.Event()

    def second() -> None:
        with budget.reserve(80):
            admitted.set()

    with budget.reserve(50):
        waiter = threading.Thread(target=second)
        waiter.start()
        wait_until(lambda: budget.waiting == 1, GENEROUS_S, "the second decode to queue")
        assert not admitted.is_set()  # 50 + 80 does not fit
    waiter.join(GENEROUS_S)
    assert admitted.is_set() and budget.in_use == 0


def test_an_image_larger_than_the_whole_budget_is_refused_at_once() -> None:
    with pytest.raises(TooManyPixels, match="at most 1 MB"):
        with DecodeBudget(1024 * 1024).reserve(5 * 1024 * 1024):
            pass


def test_a_thread_that_waits_too_long_gets_decode_busy() -> None:
    budget = DecodeBudget(100)
    with budget.reserve(100):
        with pytest.raises(DecodeBusy) as refused:
            with budget.reserve(1, wait_s=0):
                pass
    assert refused.value.status == 503 and refused.value.retry_after_s
    with budget.reserve(100):  # the refused waiter left nothing behind
        assert budget.in_use == 100


def test_async_waiters_are_served_in_arrival_order() -> None:
    """A large upload is not overtaken by a small one that arrived after it, though the small
    one would fit first."""

    async def scenario() -> list[str]:
        budget = AsyncDecodeBudget(100)
        order: list[str] = []
        release = asyncio.Event()

        async def decode(name: str, cost: int) -> None:
            async with budget.reserve(cost, wait_s=GENEROUS_S):
                order.append(name)
                if name == "first":
                    await release.wait()

        first = asyncio.create_task(decode("first", 60))
        await asyncio.sleep(0)  # let it take its share
        large = asyncio.create_task(decode("large", 90))
        await asyncio.sleep(0)
        small = asyncio.create_task(decode("small", 10))
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["first"]  # the small one waits behind the large one
        release.set()
        await asyncio.gather(first, large, small)
        assert budget.in_use == 0
        return order

    assert asyncio.run(scenario()) == ["first", "large", "small"]


def test_an_async_wait_that_runs_out_is_decode_busy_and_leaves_the_queue() -> None:
    async def scenario() -> None:
        budget = AsyncDecodeBudget(100)
        async with budget.reserve(70):
            with pytest.raises(DecodeBusy):
                async with budget.reserve(50, wait_s=0.01):
                    pass
            async with budget.reserve(30, wait_s=0):  # fits beside: nobody left in line
                assert budget.in_use == 100
        assert budget.in_use == 0

    asyncio.run(scenario())


def test_a_request_cancelled_while_giving_its_share_back_still_gives_it_back() -> None:
    """A client that hangs up as its decode ends, while the budget's lock is busy (other
    requests being admitted), must not keep its bytes: leaked for the life of the process,
    such shares would leave every later upload waiting into 503 decode_busy."""

    async def scenario() -> int:
        budget = AsyncDecodeBudget(100)
        inside, leave = asyncio.Event(), asyncio.Event()

        async def decode() -> None:
            async with budget.reserve(60):
                inside.set()
                await leave.wait()

        request = asyncio.create_task(decode())
        await inside.wait()
        assert budget._changed is not None
        async with budget._changed:  # the lock, as another request admitting itself holds it
            leave.set()
            for _ in range(5):  # the request leaves its block and queues for the lock
                await asyncio.sleep(0)
            request.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
        await asyncio.gather(request, return_exceptions=True)
        return budget.in_use

    assert asyncio.run(scenario()) == 0
