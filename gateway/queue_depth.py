"""How many jobs wait in the broker's queue: for `max_queue_depth` (503 `queue_full`) and the
`pneumo_queue_depth` gauge.

Where the broker is the records' Redis (the default), the queue is a list read with one LLEN
on the store's connections (`AsyncStore.queue_depth`), cheap enough to read per submission.
Any other broker (RabbitMQ, another Redis) is asked through kombu with a passive queue declare,
whose message count is what waits (RabbitMQ leaves out messages delivered and not yet
acknowledged, as the Redis list does): a round trip on a blocking connection, so it runs in a
thread and is read at most every `broker_depth_sample_ms`, however many submissions arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from celery import Celery
from kombu import Connection

from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.queue import broker_url
from shared.store import AsyncStore

NOT_FOUND = 404  # AMQP's reply code for a queue that was never declared: nothing waits


class QueueDepth:
    def __init__(self, settings: Settings, celery: Celery,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.queue_name = settings.queue_name
        self.in_store = broker_url(settings) == settings.redis_url
        self.celery = celery
        self.sample_s = settings.broker_depth_sample_ms / 1000.0
        self.clock = clock
        self._depth = 0
        self._read_at: float | None = None
        self._lock = asyncio.Lock()  # one read in flight; the others take its answer
        self._connection: Connection | None = None

    async def read(self, store: AsyncStore) -> int:
        if self.in_store:
            return await store.queue_depth(self.queue_name)
        async with self._lock:
            if self._read_at is None or self.clock() - self._read_at >= self.sample_s:
                self._depth = await asyncio.to_thread(self._ask_broker)
                self._read_at = self.clock()
        return self._depth

    def _ask_broker(self) -> int:
        # A connection of its own, used by one read at a time (the lock): the producer pool's
        # are the publishers', and a pooled connection closed after a failure stays closed.
        if self._connection is None:
            self._connection = self.celery.connection_for_read()
        connection = self._connection
        try:
            channel = connection.channel()  # connects (once) if it must
            try:
                _, count, _ = channel.queue_declare(queue=self.queue_name, passive=True)
            finally:
                channel.close()
        except (*connection.connection_errors, *connection.channel_errors, OSError) as error:
            # A redis:// broker's kombu answers a queue never filled with a ChannelError
            # without a code; RabbitMQ's says 404.
            if isinstance(error, connection.channel_errors):
                if getattr(error, "code", NOT_FOUND) == NOT_FOUND:
                    return 0
            connection.collect()  # let the socket go without a word to a broker that is away
            self._connection = None
            raise QueueUnavailable("The job queue is unreachable.") from error
        return int(count)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.collect()
            self._connection = None
