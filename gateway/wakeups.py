"""Wake-ups for long polls: one subscription to the store's finished channel per gateway process.

A worker's final write announces the job id on the finished channel, in the same script that
writes the record (`shared.store.scripts`). A long poll waits for that announcement instead of
re-reading the record in a loop, so it answers within milliseconds of the result and costs
Redis nothing while it waits.

Why one subscription per process, not one per request: a subscribed connection is a whole
Redis connection, held for as long as it listens, so a thousand waiting requests would hold a
thousand. Here they share one, and a dict from job id to waiters fans each message out.

Pub/sub delivers at most once: a message published while the subscription is down is lost.
So every waiter re-reads its record at least every `RECHECK_S` even without a message (a
lost message costs at most that long, never a hang), and every waiter is told to re-read as
soon as the subscription is back.

Time comes from a `Clock`, so tests move it instead of waiting for it to pass.

Stopping takes more than one `cancel()`. On Python 3.11, `asyncio.wait_for` (which redis-py
uses for its socket writes and connects) returns the awaited result and drops the cancellation
when both land in the same loop step, so a single cancel can vanish and leave the listener
running for ever, and the gateway's shutdown waiting on it. `stop` therefore raises a flag the
loops check and cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Protocol

from redis.exceptions import RedisError

from shared.store import AsyncStore, FinishedAnnouncements

log = logging.getLogger(__name__)

RECHECK_S = 1.0
# One read of the subscription waits at most this long, not for ever, so the connection's
# health check runs even while no job finishes.
LISTEN_TIMEOUT_S = 1.0
# After a lost connection: 0.2 s, 0.4 s, ... then every BACKOFF_MAX_S until Redis is back.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
# How long `stop` waits for the listener to end before cancelling it again.
RECANCEL_S = 0.05


class Clock(Protocol):
    """Seconds on a monotonic scale, and waits measured on it."""

    def now(self) -> float: ...

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Until `event` is set (True) or `timeout_s` passes (False)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
            return True
        except TimeoutError:
            return False

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Wakeup:
    """One request's interest in one job."""

    def __init__(self, recheck_s: float, clock: Clock):
        self.recheck_s = recheck_s
        self.clock = clock
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """Until a message says the job finished (True), or the timeout or the recheck interval
        passes (False); either way the caller re-reads the record next."""
        try:
            return await self.clock.wait(self._event, min(timeout_s, self.recheck_s))
        finally:
            # Consumed before the caller's re-read, so a message after that read wakes the
            # next wait instead of being lost.
            self._event.clear()


class FinishedJobs:
    """The process's subscription to the finished channel and the requests waiting on it."""

    def __init__(
        self,
        store: AsyncStore,
        recheck_s: float = RECHECK_S,
        clock: Clock | None = None,
        listen_timeout_s: float = LISTEN_TIMEOUT_S,
    ):
        self.store = store
        self.recheck_s = recheck_s
        self.listen_timeout_s = listen_timeout_s
        # Public so a test can swap in a clock it moves itself, before the first request.
        self.clock: Clock = clock or MonotonicClock()
        self.subscriptions = 0  # times the subscription was (re)established
        self.subscribed = False
        self._waiters: dict[str, set[Wakeup]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._listen_forever(), name="finished-jobs")

    async def stop(self) -> None:
        """Ends the listener, even where a cancellation is swallowed inside the Redis client
        (see the module's docstring)."""
        task, self._stopping = self._task, True
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL_S)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
        self._task = None

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[Wakeup]:
        """Enter before re-reading the record: a final write after that read then wakes it.
        Leaving removes the waiter, whether it finished, timed out or was cancelled."""
        wakeup = Wakeup(self.recheck_s, self.clock)
        self._waiters.setdefault(job_id, set()).add(wakeup)
        try:
            yield wakeup
        finally:
            waiters = self._waiters[job_id]
            waiters.discard(wakeup)
            if not waiters:
                del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    def _wake(self, job_id: str) -> None:
        for wakeup in self._waiters.get(job_id, ()):
            wakeup.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for wakeup in waiters:
                wakeup.set()

    async def _listen_forever(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                async with self.store.finished_announcements() as announcements:
                    failures = 0
                    await self._relay(announcements)
            except (RedisError, OSError) as error:
                failures += 1
                log.warning("Lost the finished-jobs subscription: %s", error)
            except Exception:
                # A bug here must not end wake-ups for the life of the process; the waiters'
                # rechecks serve them meanwhile.
                failures += 1
                log.exception("The finished-jobs subscription failed unexpectedly.")
            self.subscribed = False
            if not self._stopping:
                await self.clock.sleep(min(BACKOFF_FIRST_S * 2**failures, BACKOFF_MAX_S))

    async def _relay(self, announcements: FinishedAnnouncements) -> None:
        while not self._stopping:
            announcement = await announcements.next(self.listen_timeout_s)
            if announcement is None:
                continue
            if announcement.job_id is None:
                # Redis confirmed the subscription: listening from here on. A job that
                # finished while we were not was never announced to us, so every waiter
                # re-reads now instead of at its recheck.
                self.subscribed = True
                self.subscriptions += 1
                self._wake_all()
            else:
                self._wake(announcement.job_id)
