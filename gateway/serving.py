"""What the live workers serve, as the gateway learns it from their heartbeats.

Workers publish their model card every `heartbeat_s` (`{p}:workers`); the gateway reads it for
readiness, `/v1/models`, result dedupe and, here, to preprocess uploads the way the serving
model expects (`shared.handoff`).
"""

from __future__ import annotations

import time

from shared.imaging import PreprocessParams
from shared.store import AsyncStore

# Three missed heartbeats and a worker counts as gone.
HEARTBEAT_GRACE = 3.0


async def live_workers(store: AsyncStore, heartbeat_s: float) -> dict[str, dict]:
    return await store.live_workers(max_age_s=HEARTBEAT_GRACE * heartbeat_s)


class ServingPreprocessing:
    """The preprocessing every live worker's model shares, or None when there is no worker or
    they disagree (a rolling upgrade): the workers then decode uploads themselves.

    Read from Redis at most once per heartbeat interval, not once per upload; a stale answer
    costs nothing but speed, because a worker checks the input's fingerprint before using it.
    """

    def __init__(self, heartbeat_s: float):
        self.heartbeat_s = heartbeat_s
        self._params: PreprocessParams | None = None
        self._read_at = float("-inf")

    async def current(self, store: AsyncStore) -> PreprocessParams | None:
        now = time.monotonic()
        if now - self._read_at >= self.heartbeat_s:
            self._read_at = now
            workers = await live_workers(store, self.heartbeat_s)
            distinct = {
                PreprocessParams.model_validate(beat["model"]["preprocessing"])
                for beat in workers.values()
            }
            self._params = distinct.pop() if len(distinct) == 1 else None
        return self._params
