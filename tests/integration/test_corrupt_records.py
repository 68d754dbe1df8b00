"""A job record the service cannot read gives the same clear error on both sides
(`shared.errors.CorruptRecord`, code `corrupt_record`): the gateway answers it as JSON, and a
worker fails the job with it instead of dropping it as gone. The garbage goes into the real
redis-server under the store's own key function."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from shared.config import Settings
from shared.errors import CorruptRecord
from shared.queue import enqueue_predict, make_celery
from shared.schemas import Job, JobStatus
from shared.store import AsyncStore, SyncStore, new_job
from tests.support.images import phantom_png
from tests.support.processes import RedisServer, wait_until
from worker.serving.recovery import sweep_once

# Not JSON at all; and JSON that is no job (the shape a newer or older version might write).
GARBAGE = (b"\x00\xffnot a record{", b'{"status": "queued", "job": 7}')


def sync_store(settings: Settings) -> SyncStore:
    return SyncStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s)


def corrupt(store: SyncStore, job_id: str, garbage: bytes = GARBAGE[0]) -> None:
    store.client.set(store.keys.job(job_id), garbage, ex=store.ttl_s)


@pytest.mark.parametrize("garbage", GARBAGE, ids=["not_json", "not_a_job"])
def test_both_stores_read_an_unreadable_record_as_the_same_error(
    settings: Settings, redis_server: RedisServer, garbage: bytes
) -> None:
    store, job_id = sync_store(settings), str(uuid.uuid4())
    corrupt(store, job_id, garbage)
    (by_worker,) = store.load_jobs([job_id])

    async def read_in_gateway() -> CorruptRecord:
        gateway_store = AsyncStore.from_url(settings.redis_url, settings.key_prefix, 3600)
        try:
            with pytest.raises(CorruptRecord) as raised:
                await gateway_store.get(job_id)
            return raised.value
        finally:
            await gateway_store.aclose()

    by_gateway = asyncio.run(read_in_gateway())
    assert isinstance(by_worker, CorruptRecord)
    assert by_worker.code == by_gateway.code == "corrupt_record"
    assert by_worker.message == by_gateway.message and job_id in by_gateway.message


def test_the_gateway_answers_an_unreadable_record_as_a_json_error(
    api: TestClient, settings: Settings
) -> None:
    job_id = str(uuid.uuid4())
    corrupt(sync_store(settings), job_id)
    for params in ({}, {"wait": 5}):
        reply = api.get(f"/v1/jobs/{job_id}", params=params)
        assert reply.status_code == 500
        assert reply.json()["error"]["code"] == "corrupt_record"
        assert job_id in reply.json()["error"]["message"]


def test_a_batch_with_an_unreadable_record_answers_the_same_error(
    api: TestClient, settings: Settings
) -> None:
    created = api.post("/v1/batches", files=[("files", ("a.png", phantom_png(11)))]).json()
    (job_id,) = created["job_ids"]
    # Finished first, so no worker's final write replaces the garbage.
    assert api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()["status"] == "succeeded"
    corrupt(sync_store(settings), job_id)
    reply = api.get(f"/v1/batches/{created['batch_id']}")
    assert reply.status_code == 500 and reply.json()["error"]["code"] == "corrupt_record"


def test_a_worker_fails_a_job_whose_record_it_cannot_read(
    api: TestClient, settings: Settings
) -> None:
    store, job_id = sync_store(settings), str(uuid.uuid4())
    corrupt(store, job_id)
    enqueue_predict(make_celery(settings, "corrupt-record-test"), settings, job_id)
    wait_until(lambda: isinstance(store.load_jobs([job_id])[0], Job), 60, "the job to be failed")
    reply = api.get(f"/v1/jobs/{job_id}")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == JobStatus.failed.value
    assert body["error"]["code"] == "corrupt_record" and job_id in body["error"]["message"]


def test_the_sweeper_queues_an_unreadable_pending_job_again(
    settings: Settings, redis_server: RedisServer
) -> None:
    """So a worker fails it, saying why, instead of the sweeper forgetting it as gone."""
    store = SyncStore.from_url(settings.redis_url, f"sweep-{uuid.uuid4().hex[:8]}", 3600)
    job = new_job(str(uuid.uuid4()), 3600)
    store.save([job], pending=True)
    corrupt(store, job.job_id)
    queued: list[str] = []
    assert sweep_once(store, queued.append, older_than_s=-1) == 1
    assert queued == [job.job_id]
