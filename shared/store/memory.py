"""How full Redis is: the gateway's memory watermark.

Redis at `maxmemory` with `noeviction` refuses every write, and a write the workers cannot make
(a claim, a result) leaves jobs stuck until memory frees up. So the gateway stops accepting new
jobs earlier, at a fraction of `maxmemory` (`PNEUMO_STORE_MEMORY_WATERMARK`), and the headroom
above it stays for the workers finishing what was accepted (each final write also drops its
upload, so finishing frees memory). `INFO memory` is read at most once per sampling interval
however many requests ask, so a flood costs Redis one command per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis


@dataclass(frozen=True)
class MemorySample:
    used_bytes: int
    max_bytes: int  # 0: Redis has no limit

    def fraction(self) -> float:
        return self.used_bytes / self.max_bytes if self.max_bytes else 0.0


class MemoryWatermark:
    """`is_high()` is true while Redis's used memory is at or above `fraction` of its
    `maxmemory`; never with no `maxmemory` set, nor with `fraction` 1 or more (the check off)."""

    def __init__(
        self,
        fraction: float,
        sample_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.fraction = fraction
        self.sample_interval_s = sample_interval_s
        self.clock = clock
        self.last: MemorySample | None = None
        self._sampled_at = float("-inf")
        # One sample in flight at a time: the requests arriving meanwhile use its answer.
        self._sampling = asyncio.Lock()

    async def is_high(self, client: aioredis.Redis) -> bool:
        if self.fraction >= 1.0:
            return False
        sample = await self.sample(client)
        return sample.max_bytes > 0 and sample.fraction() >= self.fraction

    async def sample(self, client: aioredis.Redis) -> MemorySample:
        """The latest sample, read again if older than the interval."""
        async with self._sampling:
            if self.last is None or self.clock() - self._sampled_at >= self.sample_interval_s:
                info = await client.info("memory")
                self.last = MemorySample(int(info["used_memory"]), int(info["maxmemory"]))
                self._sampled_at = self.clock()
            return self.last
