"""kombu's Redis transport, receiving many messages per round trip instead of one.

kombu fetches with `BRPOP`, one message per round trip, in the thread that also turns each
message into a Celery request. A GPU worker that takes thousands of jobs a second spends most
of that thread's time on those round trips and the event-loop turns around them, while the
model waits for its next batch (bench/RESULTS.md). Here the same wait is a `BLMPOP ... COUNT
n` (Redis 7.0+): it blocks like `BRPOP` while the queues are empty, and under a backlog it
returns up to `n` messages at once, `n` being what the prefetch limit still allows. Everything
else (priorities, ack emulation, the visibility timeout, restoring on shutdown) is kombu's.

Used by the worker when `PNEUMO_BROKER_MULTI_POP` is on (`worker.celery_app`). The two
overridden methods are private to kombu, so `pyproject.toml` pins kombu and
tests/integration/test_transport.py drains a queue through this transport.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

BLMPOP = "BLMPOP"
FIRST_REDIS_WITH_BLMPOP = (7, 0)
# A backlog is taken this many messages at a time at most, whatever the prefetch limit, so one
# round trip never hands the consumer more than it turns into requests in a few milliseconds.
MAX_MESSAGES_PER_POP = 256


def has_blmpop(redis_version: str) -> bool:
    major, minor = (int(part) for part in redis_version.split(".")[:2])
    return (major, minor) >= FIRST_REDIS_WITH_BLMPOP


class Channel(kombu_redis.Channel):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Said once at start-up, instead of an "unknown command" on every poll.
        version = self.client.info("server")["redis_version"]
        if not has_blmpop(version):
            self.close()
            raise RuntimeError(
                f"PNEUMO_BROKER_MULTI_POP=true needs Redis 7.0 or later (BLMPOP); the broker "
                f"runs Redis {version}. Upgrade Redis or set PNEUMO_BROKER_MULTI_POP=false."
            )

    def _brpop_start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        # Same keys, same order as kombu's BRPOP: by priority, then queue; the first non-empty
        # key is popped from, on the same (right) end.
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        if self.global_keyprefix:
            keys = [f"{self.global_keyprefix}{key}" for key in keys]
        allowed = self.qos.can_consume_max_estimate()  # None: no prefetch limit
        count = MAX_MESSAGES_PER_POP
        if allowed is not None:
            count = min(max(allowed, 1), MAX_MESSAGES_PER_POP)
        self._in_poll = self.client.connection
        self._brpop_sent_at = kombu_redis.monotonic()
        self.client.connection.send_command(
            BLMPOP, timeout or 0, len(keys), *keys, "RIGHT", "COUNT", count
        )

    def _brpop_read(self, **options: object) -> bool:
        try:
            try:
                reply = self.client.parse_response(self.client.connection, BLMPOP, **options)
            except self.connection_errors:
                # As kombu does: the next poll reconnects.
                self.client.connection.disconnect()
                raise
            if not reply:
                raise kombu_redis.Empty()
            key, items = reply
            queue = bytes_to_str(key).removeprefix(self.global_keyprefix or "")
            queue = queue.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            for item in items:
                self.connection._deliver(loads(bytes_to_str(item)), queue)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()


class Transport(kombu_redis.Transport):
    Channel = Channel
