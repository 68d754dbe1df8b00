"""Submissions per client per minute: a fixed window counted in the store, shared by every
gateway process, so the windows follow the wall clock that all of them read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import RateLimited
from shared.store import AsyncStore

WINDOW_S = 60


@dataclass(frozen=True)
class RateLimiter:
    per_minute: int  # 0: no limit
    # Seconds since the epoch; a test passes its own to place requests in a window.
    clock: Callable[[], float] = time.time

    async def admit(self, store: AsyncStore, client_scope: str) -> None:
        """Count one submission; refuse it past the limit, saying when the window ends."""
        if not self.per_minute:
            return
        now = self.clock()
        count = await store.count_submission(client_scope, int(now // WINDOW_S), WINDOW_S)
        if count > self.per_minute:
            raise RateLimited(
                f"More than {self.per_minute} submissions this minute; slow down.",
                retry_after_s=WINDOW_S - int(now % WINDOW_S),
            )
