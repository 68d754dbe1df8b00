"""Wake-ups for long polls: one Redis pub/sub subscription per gateway process.

A worker's final write publishes the job id on `{prefix}:finished`, in the same script that
writes the record (`shared.store.WRITE_UNLESS_FINAL`). A long poll waits for that message
instead of re-reading the record in a loop, so it answers within milliseconds of the result
and costs Redis nothing while it waits.

Why one subscription per process, not one per request: a subscribed connection is a whole
Redis connection, held for as long as it listens, so a thousand waiting requests would hold a
thousand. Here they share one, and a dict from job id to waiters fans each message out.

Pub/sub delivers at most once: a message published while the subscription is down is lost.
So every waiter re-reads its record at least every `RECHECK_S` even without a message (a
lost message costs at most that long, never a hang), and every waiter is told to re-read as
soon as the subscription is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECHECK_S = 1.0
# One read of the subscription waits at most this long, not for ever, so the connection's
# health check (a PING every HEALTH_CHECK_S) runs even while no job finishes.
LISTEN_TIMEOUT_S = 1.0
HEALTH_CHECK_S = 30
# After a lost connection: 0.2 s, 0.4 s, ... then every BACKOFF_MAX_S until Redis is back.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0


class Wakeup:
    """One request's interest in one job."""

    def __init__(self, recheck_s: float):
        self.recheck_s = recheck_s
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """Until a message says the job finished (True), or the timeout or the recheck interval
        passes (False); either way the caller re-reads the record next."""
        try:
            async with asyncio.timeout(min(timeout_s, self.recheck_s)):
                await self._event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            # Consumed before the caller's re-read, so a message after that read wakes the
            # next wait instead of being lost.
            self._event.clear()


class FinishedJobs:
    """The process's subscription to the finished channel and the requests waiting on it."""

    def __init__(self, redis_url: str, channel: str, recheck_s: float = RECHECK_S):
        self.channel = channel
        self.recheck_s = recheck_s
        # Its own client: the subscription holds its connection for good, outside the pool
        # that requests share. No retries inside redis-py: every lost connection reaches
        # `_listen_forever`, which resubscribes and tells the waiters to re-read.
        self.client = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=HEALTH_CHECK_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.subscriptions = 0  # times the subscription was (re)established
        self.subscribed = False
        self._waiters: dict[str, set[Wakeup]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="finished-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[Wakeup]:
        """Enter before re-reading the record: a final write after that read then wakes it.
        Leaving removes the waiter, whether it finished, timed out or was cancelled."""
        wakeup = Wakeup(self.recheck_s)
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
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    failures = 0
                    await self._relay(pubsub)
            except (RedisError, OSError) as error:
                failures += 1
                log.warning("Lost the %s subscription: %s", self.channel, error)
            except Exception:
                # A bug here must not end wake-ups for the life of the process; the waiters'
                # rechecks serve them meanwhile.
                failures += 1
                log.exception("The %s subscription failed unexpectedly.", self.channel)
            self.subscribed = False
            await asyncio.sleep(min(BACKOFF_FIRST_S * 2**failures, BACKOFF_MAX_S))

    async def _relay(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
            if message is None:
                continue
            if message["type"] == "subscribe":
                # Listening from here on; a job that finished while we were not was never
                # announced to us, so every waiter re-reads now instead of at its recheck.
                self.subscribed = True
                self.subscriptions += 1
                self._wake_all()
            elif message["type"] == "message":
                self._wake(message["data"].decode())
