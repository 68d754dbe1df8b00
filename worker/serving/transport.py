"""kombu's Redis transport, with a few round trips per batch instead of three per message.

kombu spends up to three Redis round trips on every message, all of them in the thread that
also turns messages into Celery requests: a `BRPOP` that fetches one message, a transaction
that records it as unacknowledged (ack emulation, what lets another worker redeliver a killed
worker's jobs) and a second transaction that erases that record on acknowledgement. Where the
model is cheap, that per-message bookkeeping is a visible share of what a job costs the worker
(how much: bench/RESULTS.md). Here:

* **Acknowledgements are written together**, once per turn of the consumer's event loop.
  Celery runs a batch's acknowledgements back to back on that loop, so a batch of N costs one
  transaction instead of N. Until it is written, an acknowledged message is still recorded as
  unacknowledged: a worker killed in between has it redelivered, and the job's final record
  turns the redelivery into a no-op (`worker.serving.pipeline`), as it does for any duplicate.
* **With `multi_pop`** (`PNEUMO_BROKER_MULTI_POP`, where Redis is 7.0+), the fetch is
  `BLMPOP ... COUNT n`: it blocks like `BRPOP` while the queues are empty, and under a
  backlog returns up to n messages at once, n being what the prefetch limit still allows.
  Those messages are recorded as unacknowledged in one transaction before any of them
  reaches Celery.

* **A full Redis is survived.** Erasing records is an HDEL and a ZREM without MULTI: Redis at
  `maxmemory` refuses every command queued in a transaction, deletions too, and kombu's
  transaction there stopped the worker. A record that cannot be written or erased (Redis
  full, read-only, failing its disk) is logged and left to the safety nets below, never raised
  into Celery's consumer, which treats any error it does not know as fatal.

Everything else (priorities, the visibility timeout, restoring on shutdown) is kombu's. The
worker uses this transport (`worker.serving.celery_app`); the gateway publishes with kombu's
own. The overridden methods are private to kombu, so `pyproject.toml` pins kombu, a worker
whose kombu is another version runs kombu's own transport instead (`worker.serving.overrides`),
and tests/integration/test_transport.py drives queues through this transport.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)
# After a failed erasure, acknowledgements gather for this long before the next try, so a
# refusing Redis gets a write a second, not one per turn of the event loop.
ACK_RETRY_PAUSE_S = 1.0
BLMPOP = "BLMPOP"
FIRST_REDIS_WITH_BLMPOP = (7, 0)
# A backlog is taken this many messages at a time at most, whatever the prefetch limit, so one
# round trip never hands the consumer more than it turns into requests in a few milliseconds.
MAX_MESSAGES_PER_POP = 256


def has_blmpop(redis_version: str) -> bool:
    major, minor = (int(part) for part in redis_version.split(".")[:2])
    return (major, minor) >= FIRST_REDIS_WITH_BLMPOP


def uses_multi_pop(setting: bool | str, redis_version: str) -> bool:
    """BLMPOP when asked for ("auto" or true) and the broker has it. An explicit true on a
    broker without it stops the worker at start-up, with a message saying what to change."""
    if not setting:
        return False
    if has_blmpop(redis_version):
        return True
    if setting == "auto":
        log.info("Redis %s has no BLMPOP: fetching one message per round trip.", redis_version)
        return False
    raise RuntimeError(
        f"PNEUMO_BROKER_MULTI_POP=true needs Redis 7.0 or later (BLMPOP); the broker runs "
        f"Redis {redis_version}. Upgrade Redis, or set PNEUMO_BROKER_MULTI_POP=auto or false."
    )


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, written for many messages per transaction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorded: set[str] = set()  # recorded by `record_unacked`, not yet delivered
        self._acknowledged: list[str] = []  # acknowledged, not yet written (`write_acks`)
        self._next_ack_write = 0.0  # monotonic time; later after a failed erasure

    def record_unacked(self, payloads: list[dict]) -> None:
        """What `append` writes for each message, for all of `payloads` at once. If Redis is
        unreachable here, the popped messages are lost, as kombu loses one when its `append`
        fails; their jobs are still pending, and the pending-job sweeper queues them again
        (`worker.serving.recovery`). If Redis refuses the write (full), the messages are
        delivered anyway, unrecorded, with the same safety net if this worker dies."""
        entries = {}
        for payload in payloads:
            properties = payload["properties"]
            delivery = properties["delivery_info"]
            entry = [payload, delivery["exchange"], delivery["routing_key"]]
            entries[properties["delivery_tag"]] = dumps(entry)
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, dict.fromkeys(entries, time.time()))
                pipe.hset(self.unacked_key, mapping=entries)
                pipe.execute()
        except ResponseError as error:
            log.warning("Delivering %d messages unrecorded: %s", len(entries), error)
        self._recorded.update(entries)  # either way, `append` writes nothing more for them

    def forget_undelivered(self) -> None:
        """Erase the records of messages no acknowledging consumer took (a `no_ack` consumer
        gets them too, and would otherwise have them redelivered after the timeout)."""
        if self._recorded:
            tags, self._recorded = list(self._recorded), set()
            self._erase_records(tags)

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self._recorded:
            self._recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # in memory only
            return
        try:
            super().append(message, delivery_tag)
        except ResponseError as error:  # refused (Redis full): delivered unrecorded
            log.warning("Delivering message %s unrecorded: %s", delivery_tag, error)
            virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self.channel.connection.writes_acks_each_turn:
            self._acknowledged.append(delivery_tag)
        else:  # no event loop to write them (a plain `drain_events` consumer): at once
            self._erase_records([delivery_tag])
            virtual.QoS.ack(self, delivery_tag)

    def write_acks(self) -> None:
        """Erase the records of every message acknowledged since the last call. A lost
        connection propagates: Celery then reconnects, and the channel's close restores what it
        still holds, these messages included (redelivered, then skipped as already final). A
        refused erasure is tried again after a pause; meanwhile the messages keep their
        prefetch slots, so a worker whose Redis refuses writes stops fetching more."""
        if not self._acknowledged or time.monotonic() < self._next_ack_write:
            return
        tags, self._acknowledged = self._acknowledged, []
        try:
            self._erase_records(tags)
        except ResponseError as error:
            log.warning("Could not erase %d delivery records, retrying: %s", len(tags), error)
            self._acknowledged = tags + self._acknowledged
            self._next_ack_write = time.monotonic() + ACK_RETRY_PAUSE_S
            return
        for tag in tags:
            virtual.QoS.ack(self, tag)  # frees the prefetch slot

    def _erase_records(self, tags: list[str]) -> None:
        """kombu's `_remove_from_indices`, for many tags in one round trip. Not a transaction:
        a full Redis refuses MULTI, and the record goes before its index entry, so a
        connection lost in between leaves an index entry whose restore finds nothing."""
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.hdel(self.unacked_key, *tags).zrem(self.unacked_index_key, *tags).execute()


class Channel(kombu_redis.Channel):
    QoS = QoS
    multi_pop: bool | str = False  # the transport option: True, False or "auto"
    # kombu is untyped: its class defaults (False, None, a tuple of so many names) are
    # narrower than what its own code and ours assign.
    _in_poll: Any  # False, None or the connection polled
    _brpop_sent_at: Any  # None, or when the pending pop was sent
    from_transport_options = kombu_redis.Channel.from_transport_options + ("multi_pop",)  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.multi_pop:  # once per channel, instead of an error on every poll
            try:
                self.multi_pop = uses_multi_pop(
                    self.multi_pop, self.client.info("server")["redis_version"]
                )
            except RuntimeError:
                self.close()
                raise

    def write_acks(self) -> None:
        if isinstance(self._qos, QoS):  # None before first use; kombu's without ack emulation
            self._qos.write_acks()

    def close(self) -> None:
        if not self.closed:
            # Written first, so that close restores to the queue only what is really unfinished.
            try:
                self.write_acks()
            except self.connection_errors:
                pass  # restored instead, and skipped as final when redelivered
        super().close()

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self.multi_pop:
            return super()._brpop_start(timeout)
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
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
        return None

    def _brpop_read(self, **options: Any) -> bool:
        if not self.multi_pop:
            return super()._brpop_read(**options)
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
            payloads = [loads(bytes_to_str(item)) for item in items]
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        qos = self.qos if isinstance(self.qos, QoS) else None  # kombu's without ack emulation
        if qos:
            qos.record_unacked(payloads)
        try:
            for payload in payloads:
                self.connection._deliver(payload, queue)
        finally:
            if qos:
                qos.forget_undelivered()
        return True


class Transport(kombu_redis.Transport):
    Channel = Channel
    # False until an event loop runs `write_acks` each turn; until then acks are written at once.
    writes_acks_each_turn = False

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        # Each turn runs what was scheduled (Celery's acknowledgements among it), then the
        # tick callbacks, then polls: so a turn's acknowledgements are written before its poll.
        loop.on_tick.add(self.write_acks)
        self.writes_acks_each_turn = True

    def write_acks(self) -> None:
        for channel in self.channels:
            channel.write_acks()
