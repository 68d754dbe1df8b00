"""`worker.serving.transport` against a real redis-server: many messages per round trip, yet kombu's
prefetch limit, order, acknowledgement and restore behave as with kombu's own transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from tests.support.processes import RedisServer
from worker.serving.transport import uses_multi_pop

MESSAGES = 30
PREFETCH = 10


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", appendonly=False) as server:
        yield server


def publish(redis: RedisServer, queue: Queue, count: int) -> None:
    # kombu's own transport publishes, as the gateway does.
    with Connection(redis.url) as connection:
        producer = Producer(connection)
        for index in range(count):
            producer.publish({"index": index}, exchange=queue.exchange, routing_key=queue.name,
                             declare=[queue])  # fmt: skip


def receive(connection: Connection) -> None:
    """Deliver until nothing more comes for a while: the queue is empty, or the prefetch
    limit is reached and the next pop waits for acknowledgements."""
    while True:
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            return


def commands(redis: RedisServer) -> dict[str, int]:
    with redis.client() as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def lengths(redis: RedisServer, queue: str) -> tuple[int, int, int]:
    """Messages still queued, and records of unacknowledged messages (hash, index)."""
    with redis.client() as client:
        return client.llen(queue), client.hlen("unacked"), client.zcard("unacked_index")


@pytest.mark.parametrize("ack_emulation", [True, False], ids=["ack_emulation", "no_ack_emulation"])
def test_a_backlog_arrives_in_few_round_trips_within_the_prefetch_limit_in_order(
    redis: RedisServer, ack_emulation: bool
) -> None:
    queue = Queue("multi-pop", Exchange("multi-pop", type="direct"), routing_key="multi-pop")
    publish(redis, queue, MESSAGES)
    with redis.client() as client:
        client.config_resetstat()
    received: list[Message] = []
    options = {"ack_emulation": ack_emulation, "multi_pop": True}
    with Connection(redis.url, transport="worker.serving.transport:Transport",
                    transport_options=options) as connection:  # fmt: skip
        consumer = Consumer(connection, [queue], callbacks=[lambda _, m: received.append(m)])
        consumer.qos(prefetch_count=PREFETCH)
        with consumer:
            receive(connection)
            # Nothing acknowledged yet: the prefetch limit holds, however many one pop could take.
            assert len(received) == PREFETCH
            while len(received) < MESSAGES:
                for message in received[-PREFETCH:]:
                    message.ack()
                receive(connection)
            for message in received[-PREFETCH:]:
                message.ack()
    assert [message.payload["index"] for message in received] == list(range(MESSAGES))
    calls = commands(redis)
    assert "brpop" not in calls
    # One pop per ten messages, plus the pops that found the queue empty (one per wait).
    assert calls["blmpop"] <= MESSAGES // PREFETCH * 2 + 2, calls
    if ack_emulation:  # each pop's messages recorded as unacknowledged in one write
        assert calls["hset"] <= calls["blmpop"], calls
    assert lengths(redis, "multi-pop") == (0, 0, 0)


def test_a_consumer_that_does_not_acknowledge_leaves_no_records(redis: RedisServer) -> None:
    """Messages popped for a `no_ack` consumer were recorded as unacknowledged ahead of
    delivery; the records are erased again, or the messages would come back after the
    visibility timeout."""
    queue = Queue("no-ack", Exchange("no-ack", type="direct"), routing_key="no-ack")
    publish(redis, queue, MESSAGES)
    received: list[Message] = []
    with Connection(redis.url, transport="worker.serving.transport:Transport",
                    transport_options={"multi_pop": True}) as connection:  # fmt: skip
        consumer = Consumer(connection, [queue], callbacks=[lambda _, m: received.append(m)],
                            no_ack=True)  # fmt: skip
        with consumer:
            receive(connection)
    assert len(received) == MESSAGES
    assert lengths(redis, "no-ack") == (0, 0, 0)


@pytest.mark.parametrize("multi_pop", [True, False], ids=["blmpop", "brpop"])
def test_unacknowledged_messages_go_back_to_the_queue_when_the_consumer_closes(
    redis: RedisServer, multi_pop: bool
) -> None:
    """What a worker's warm shutdown relies on: prefetched, unfinished messages are restored."""
    queue = Queue("restore", Exchange("restore", type="direct"), routing_key="restore")
    publish(redis, queue, MESSAGES)
    received: list[Message] = []
    with Connection(redis.url, transport="worker.serving.transport:Transport",
                    transport_options={"multi_pop": multi_pop}) as connection:  # fmt: skip
        consumer = Consumer(connection, [queue], callbacks=[lambda _, m: received.append(m)])
        consumer.qos(prefetch_count=PREFETCH)
        with consumer:
            receive(connection)
            for message in received[:4]:
                message.ack()
    assert len(received) == PREFETCH
    assert lengths(redis, "restore") == (MESSAGES - 4, 0, 0)


def test_multi_pop_where_redis_has_blmpop_and_a_clear_refusal_where_it_was_required() -> None:
    """Redis before 7.0 has no BLMPOP. "auto" (the default) then fetches one message per
    round trip; an explicit true stops the worker at start-up with a message saying what to
    change (Celery: "Unrecoverable error"), instead of failing on every poll."""
    for setting in ("auto", True):
        assert uses_multi_pop(setting, "7.0.15") and uses_multi_pop(setting, "8.0.0")
    assert not uses_multi_pop("auto", "6.2.14") and not uses_multi_pop("auto", "5.0.7")
    assert not uses_multi_pop(False, "7.4.1")
    with pytest.raises(RuntimeError, match="needs Redis 7.0 or later"):
        uses_multi_pop(True, "6.2.14")
