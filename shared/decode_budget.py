"""How much memory decoding may hold at once in one process, shared by the decodes in flight.

A decode reserves its cost before it allocates a byte: `shared.imaging.decode_cost` reads it
from the image's header (the decoder's own buffer, the uint8 result and its copies), so a
request's memory is known before it is spent. Reservations are granted first come, first
served: a large film is not starved by a stream of small ones. The gateway waits on the event
loop (`AsyncDecodeBudget`) and answers 503 `decode_busy` past its wait; a worker's decode
threads wait for their turn (`DecodeBudget`), since their jobs are already accepted.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from shared.errors import DecodeBusy, TooManyPixels

MEGABYTE = 1024 * 1024
# glibc's mallopt(M_MMAP_THRESHOLD): blocks this large are mapped, and unmapped when freed.
M_MMAP_THRESHOLD, MAPPED_FROM_BYTES = -3, MEGABYTE


@functools.cache
def return_freed_blocks_at_once() -> bool:
    """Make freed decode buffers leave the process, so its RSS follows the budget.

    glibc otherwise raises its mmap threshold to the size of the largest block freed (up to
    32 MB): Pillow's 16 MB image blocks and numpy's strips then come from per-thread heaps,
    which keep them after they are freed. Eight decode threads so held 1.2 GB where 260 MB
    were live at most. Fixing the threshold at 1 MB keeps every large block mapped. A no-op
    (False) away from glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MAPPED_FROM_BYTES))


class _Ledger:
    """The bookkeeping both budgets share: what is reserved, and who waits in which order."""

    def __init__(self, capacity_bytes: int):
        if capacity_bytes <= 0:
            raise ValueError(f"A decode budget needs a positive capacity, not {capacity_bytes}.")
        self.capacity = capacity_bytes
        self.in_use = 0
        self.waiting: deque[object] = deque()

    def check_fits(self, cost: int) -> None:
        """An image that could never fit is refused at once, not after a wait."""
        if cost > self.capacity:
            raise TooManyPixels(
                f"Decoding this image needs about {_megabytes(cost)} MB; this service decodes "
                f"at most {_megabytes(self.capacity)} MB at a time. Send a smaller image."
            )

    def may_enter(self, ticket: object, cost: int) -> bool:
        return self.waiting[0] is ticket and self.in_use + cost <= self.capacity

    def busy(self, wait_s: float | None) -> DecodeBusy:
        return DecodeBusy(
            f"Other images are using this service's decode memory ({_megabytes(self.capacity)} "
            f"MB) and none was freed within {wait_s} s; try again shortly."
        )


class _Budget:
    """What both budgets share: the ledger, and how full it is."""

    def __init__(self, capacity_bytes: int):
        self._ledger = _Ledger(capacity_bytes)
        return_freed_blocks_at_once()

    @property
    def in_use(self) -> int:
        return self._ledger.in_use

    @property
    def waiting(self) -> int:
        return len(self._ledger.waiting)


class DecodeBudget(_Budget):
    """Thread-safe: for decodes running in threads (a worker's intake pool)."""

    def __init__(self, capacity_bytes: int):
        super().__init__(capacity_bytes)
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, cost: int, wait_s: float | None = None) -> Iterator[None]:
        """Hold `cost` bytes for the block; wait for them (for ever with `wait_s` None)."""
        ledger = self._ledger
        ledger.check_fits(cost)
        ticket = object()
        with self._changed:
            ledger.waiting.append(ticket)
            granted = self._changed.wait_for(lambda: ledger.may_enter(ticket, cost), wait_s)
            ledger.waiting.remove(ticket)
            self._changed.notify_all()  # the next in line may fit beside us, or be first now
            if not granted:
                raise ledger.busy(wait_s)
            ledger.in_use += cost
        try:
            yield
        finally:
            with self._changed:
                ledger.in_use -= cost
                self._changed.notify_all()


class AsyncDecodeBudget(_Budget):
    """For one event loop (a gateway process): waiting costs no thread."""

    def __init__(self, capacity_bytes: int):
        super().__init__(capacity_bytes)
        self._changed: asyncio.Condition | None = None  # made on first use, on its loop

    @asynccontextmanager
    async def reserve(self, cost: int, wait_s: float | None = None) -> AsyncIterator[None]:
        """Hold `cost` bytes for the block; past `wait_s` seconds of waiting, `DecodeBusy`."""
        ledger = self._ledger
        ledger.check_fits(cost)
        changed = self._changed = self._changed or asyncio.Condition()
        ticket = object()
        async with changed:
            ledger.waiting.append(ticket)
            try:
                async with asyncio.timeout(wait_s):
                    await changed.wait_for(lambda: ledger.may_enter(ticket, cost))
            except TimeoutError:
                raise ledger.busy(wait_s) from None
            finally:
                ledger.waiting.remove(ticket)
                changed.notify_all()
            ledger.in_use += cost
        try:
            yield
        finally:
            # Given back before waiting for the lock: a request cancelled while it waits (its
            # client hung up) would otherwise keep its share for the life of the process. One
            # loop, no await in between: the waiters, who read it under the lock, see it whole.
            ledger.in_use -= cost
            async with changed:
                changed.notify_all()


def _megabytes(size: int) -> int:
    return -(-size // MEGABYTE)
