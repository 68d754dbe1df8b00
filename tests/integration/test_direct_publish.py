"""The gateway's own publish (`shared.queue.predict_message`, pushed with the job's record)
against Celery's: the same bytes on the same Redis list, and a job queued that way served."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from bench.enqueue import measure
from bench.processes import RedisServer
from shared.config import Settings
from shared.queue import (
    enqueue_predict,
    make_celery,
    predict_message,
    publishes_with_the_record,
)
from tests.support.images import phantom_jpeg


def ids_replaced(message: bytes) -> bytes:
    """The message with its fresh ids (task id, delivery tag) as fixed words."""
    fields = json.loads(message)
    task_id, tag = fields["headers"]["id"], fields["properties"]["delivery_tag"]
    assert uuid.UUID(task_id) and uuid.UUID(tag)
    return message.replace(task_id.encode(), b"TASK-ID").replace(tag.encode(), b"DELIVERY-TAG")


def test_the_message_is_celerys_own_but_for_its_ids(redis_server: RedisServer) -> None:
    """Celery's publish goes onto a queue no worker reads; ours must match it byte for byte
    (a Celery or kombu upgrade that changes the protocol fails here, not in production)."""
    settings = Settings(redis_url=redis_server.url, queue_name=f"capture-{uuid.uuid4()}")
    celery = make_celery(settings, "pneumo-gateway")
    job_id = str(uuid.uuid4())
    client = redis_server.client()
    try:
        enqueue_predict(celery, settings, job_id)
        published = client.rpop(settings.queue_name)
        assert published is not None and client.llen(settings.queue_name) == 0
        ours = predict_message(celery, settings, job_id)
        assert ids_replaced(ours) == ids_replaced(published)
        assert predict_message(celery, settings, job_id) != ours  # fresh ids each time
    finally:
        client.delete(settings.queue_name)


def test_only_a_broker_that_is_the_records_redis_gets_the_message_with_the_record() -> None:
    records = "redis://127.0.0.1:6390/0"
    assert publishes_with_the_record(Settings(redis_url=records))
    assert publishes_with_the_record(Settings(redis_url=records, broker_url=records))
    assert not publishes_with_the_record(
        Settings(redis_url=records, broker_url="redis://127.0.0.1:6391/0")
    )
    assert not publishes_with_the_record(
        Settings(redis_url=records, broker_url="amqp://guest:guest@127.0.0.1:5672//")
    )


def test_a_job_queued_with_its_record_is_served(
    api: TestClient, settings: Settings, redis_server: RedisServer
) -> None:
    """The gateway stores and queues in one transaction; the real worker answers the job."""
    assert publishes_with_the_record(settings)
    reply = api.post("/v1/jobs", files={"file": ("film.jpg", phantom_jpeg(7), "image/jpeg")})
    assert reply.status_code == 202, reply.text
    job = api.get(f"/v1/jobs/{reply.json()['job_id']}", params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    assert redis_server.client().llen(settings.queue_name) == 0


def test_the_enqueue_benchmark_measures_both_ways(tmp_path: Path) -> None:
    """`python -m bench.enqueue` in miniature, on a Redis of its own (it empties it between
    passes): both ways store and queue every job (it checks the queue's length after each
    pass) and get a CPU figure."""
    with RedisServer(tmp_path / "redis") as redis:
        results = asyncio.run(measure(redis, jobs=20, concurrency=4, rounds=1))
    assert set(results["cpu_ms_per_job"]) == {"celery_publish", "with_record"}
    assert all(value > 0 for value in results["cpu_ms_per_job"].values())
    assert results["with_record_over_celery_publish"] > 0
