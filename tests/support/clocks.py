"""A clock that moves only when the test says: `gateway.wakeups.Clock` without waiting.

The app's event loop runs in another thread under TestClient, so timers are resolved through
`call_soon_threadsafe`, and the test can wait for the app to start a timer before it moves time.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from tests.support.processes import wait_until


@dataclass(eq=False)  # a timer is itself, whatever its fields
class _Timer:
    due: float
    loop: asyncio.AbstractEventLoop
    ring: asyncio.Future[None]


class ManualClock:
    def __init__(self, start: float = 1000.0):
        self._now = start
        self._lock = threading.Lock()
        self._timers: list[_Timer] = []
        self.requested: list[float] = []  # every wait's and sleep's length, in order

    def now(self) -> float:
        with self._lock:
            return self._now

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        timer = self._start_timer(timeout_s)
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({woken, timer.ring}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            self._drop(timer)
        return event.is_set()

    async def sleep(self, seconds: float) -> None:
        timer = self._start_timer(seconds)
        try:
            await timer.ring
        finally:
            self._drop(timer)

    def advance(self, seconds: float) -> None:
        """Move time on; every timer now due rings, in the loop that started it."""
        with self._lock:
            self._now += seconds
            due = [timer for timer in self._timers if timer.due <= self._now]
        for timer in due:
            timer.loop.call_soon_threadsafe(_ring, timer.ring)

    @property
    def running_timers(self) -> int:
        with self._lock:
            return len(self._timers)

    def wait_for_timers(self, count: int, started: int | None = None) -> None:
        """Until `count` timers run (and, if given, `started` were ever started): the app is
        waiting on this clock. A generous real timeout: this waits for an event, not time."""
        wait_until(
            lambda: self.running_timers >= count and len(self.requested) >= (started or 0),
            10,
            f"{count} timer(s) on the manual clock",
        )

    def _start_timer(self, seconds: float) -> _Timer:
        loop = asyncio.get_running_loop()
        with self._lock:
            timer = _Timer(self._now + seconds, loop, loop.create_future())
            self._timers.append(timer)
            self.requested.append(seconds)
        return timer

    def _drop(self, timer: _Timer) -> None:
        with self._lock:
            if timer in self._timers:
                self._timers.remove(timer)


def _ring(ring: asyncio.Future[None]) -> None:
    if not ring.done():
        ring.set_result(None)
