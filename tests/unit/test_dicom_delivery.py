"""One look at a job's delivery (`Deliverer.step`) against a real Redis and real network peers:
wait for the job, skip a failed one, retry with doubling backoff, give up visibly."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest

from gateway.dicom_delivery import CStoreSender, Deliverer, StowSender, sender_for
from shared.config import Settings
from shared.dicom_header import SOURCE_HEADER_BLOB
from shared.dicom_results import part10
from shared.display import encode_display
from shared.geometry import Placement, Span
from shared.handoff import pack_map
from shared.queue import make_celery
from shared.schemas import Delivery, Job, JobError, JobStatus
from shared.store import SyncStore
from tests.support.pacs import cr_instance, succeeded_job
from tests.support.processes import RedisServer, free_port

WHOLE = Span(start=0.0, stop=1.0)


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[SyncStore]:
    prefix = f"delivery-{uuid.uuid4().hex[:8]}"  # this test's keys only
    yield SyncStore(redis_server.client(), prefix, ttl_s=600)


def settings(**overrides: object) -> Settings:
    closed = f"http://pneumo:s3cret@127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    values: dict = {"dicomweb_destination": closed, "delivery_attempts": 3,
                    "delivery_backoff_s": 2.0, "delivery_backoff_max_s": 5.0}  # fmt: skip
    return Settings(**(values | overrides))


def saved_job(store: SyncStore, status: JobStatus = JobStatus.succeeded) -> Job:
    """A job from the DICOM network as the store keeps it: record, source header, pictures."""
    job = succeeded_job().model_copy(update={"job_id": str(uuid.uuid4()), "status": status})
    job.expires_at = job.created_at + timedelta(minutes=10)
    job.delivery = Delivery(state="pending")
    if status is not JobStatus.succeeded:
        job.result = None
        job.error = JobError(code="corrupt_image", message="x") if status.is_final else None
    header = cr_instance(np.zeros((64, 48), dtype=np.uint16))
    whole = Placement(crop_rows=WHOLE, crop_columns=WHOLE, input_rows=WHOLE, input_columns=WHOLE)
    blobs = {SOURCE_HEADER_BLOB: part10(header), "display": encode_display(
        np.full((64, 48), 90, np.uint8)), "cam": pack_map(np.ones((4, 4), np.float32)),
        "placement": whole.to_bytes()}  # fmt: skip
    store.save([job], {job.job_id: blobs})
    return job


def delivery_of(store: SyncStore, job: Job) -> Delivery | None:
    (loaded,) = store.load_jobs([job.job_id])
    assert isinstance(loaded, Job)
    return loaded.delivery


def counts(store: SyncStore) -> dict[str, int]:
    raw = store.client.hgetall(store.keys.deliveries)
    return {name.decode(): int(value) for name, value in raw.items()}  # type: ignore[union-attr]


def test_an_unfinished_job_is_looked_at_again_without_a_try(store: SyncStore) -> None:
    configured = settings()
    job = saved_job(store, JobStatus.running)
    deliverer = Deliverer(store, configured, sender_for(configured))
    assert deliverer.step(job.job_id) == configured.delivery_poll_s
    assert delivery_of(store, job) == Delivery(state="pending") and counts(store) == {}


def test_a_failed_job_has_nothing_to_send(store: SyncStore) -> None:
    configured = settings()
    job = saved_job(store, JobStatus.failed)
    assert Deliverer(store, configured, sender_for(configured)).step(job.job_id) is None
    assert delivery_of(store, job) == Delivery(state="skipped")
    assert counts(store) == {"skipped": 1}


def test_failed_tries_back_off_doubling_then_give_up_visibly(store: SyncStore) -> None:
    configured = settings()
    job = saved_job(store)
    deliverer = Deliverer(store, configured, sender_for(configured))
    assert [deliverer.step(job.job_id) for _ in range(3)] == [2.0, 4.0, None]
    delivery = delivery_of(store, job)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("failed", 3)
    assert "STOW-RS to http://127.0.0.1:" in (delivery.last_error or "")  # no credentials
    assert counts(store) == {"retried": 2, "failed": 1}
    assert deliverer.step(job.job_id) is None  # settled: a repeated message does nothing
    assert counts(store) == {"retried": 2, "failed": 1}


def test_the_wait_is_capped(store: SyncStore) -> None:
    configured = settings(delivery_attempts=10)
    deliverer = Deliverer(store, configured, sender_for(configured))
    assert [deliverer.backoff_s(attempts) for attempts in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]


def test_a_deleted_job_is_not_brought_back(store: SyncStore) -> None:
    configured = settings()
    job = saved_job(store)
    store.client.delete(store.keys.job(job.job_id))
    assert Deliverer(store, configured, sender_for(configured)).step(job.job_id) is None
    assert store.client.get(store.keys.job(job.job_id)) is None and counts(store) == {}


def test_the_destination_picks_the_sender() -> None:
    by_dimse = sender_for(Settings(dicom_destination="PACS_01@[::1]:11112"))
    assert isinstance(by_dimse, CStoreSender)
    assert (by_dimse.called, by_dimse.host, by_dimse.port) == ("PACS_01", "::1", 11112)
    assert isinstance(sender_for(Settings(dicomweb_destination="http://pacs/dicom-web")),
                      StowSender)  # fmt: skip
    with pytest.raises(ValueError, match="not AET@host:port"):
        Settings(dicom_destination="pacs.example:104")
    with pytest.raises(ValueError, match="not both"):
        Settings(dicom_destination="A@h:1", dicomweb_destination="http://pacs")


def test_a_delivery_whose_message_was_lost_is_queued_again(
    store: SyncStore, redis_server: RedisServer
) -> None:
    configured = settings(delivery_queue_name=f"{store.keys.prefix}-queue",
                          redis_url=redis_server.url)  # fmt: skip
    job = saved_job(store, JobStatus.running)
    deliverer = Deliverer(store, configured, sender_for(configured))
    assert deliverer.step(job.job_id) == configured.delivery_poll_s  # looked at: tracked
    app = make_celery(configured)
    assert deliverer.sweep(app) == []  # recently looked at: its message is on its way
    # Its message is lost (a retry that could not be published): nobody looks at it again.
    store.client.zadd(store.keys.deliveries_pending, {job.job_id: time.time() - 3600})
    assert deliverer.sweep(app) == [job.job_id]
    (message,) = store.client.lrange(configured.delivery_queue_name, 0, -1)
    args, kwargs, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
    assert (args, kwargs) == ([job.job_id], {})  # the job id, nothing else
    assert deliverer.sweep(app) == []  # queued again once, not at every sweep
    store.client.delete(configured.delivery_queue_name)


def test_a_settled_delivery_is_no_longer_tracked(store: SyncStore) -> None:
    configured = settings()
    job = saved_job(store, JobStatus.failed)
    Deliverer(store, configured, sender_for(configured)).step(job.job_id)
    assert store.client.zscore(store.keys.deliveries_pending, job.job_id) is None
