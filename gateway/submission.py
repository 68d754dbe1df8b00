"""Accepting an upload: read within limits, decode once to validate it and to make the model
input (`shared.handoff`), store, enqueue.

A rejected upload stores nothing; an upload that cannot be enqueued is removed again. A
repeated submission (same Idempotency-Key, or the same image with result dedupe on) is
answered with the job it made before (`gateway.idempotency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

from celery import Celery
from fastapi import UploadFile
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from gateway.idempotency import IN_FLIGHT_TTL_S, ReuseKeys, claim, find_earlier, reuse_keys
from gateway.rate_limit import RateLimiter
from gateway.wakeups import FinishedJobs
from shared.config import Settings
from shared.errors import (
    AppError,
    QueueFull,
    QueueUnavailable,
    UnknownMethod,
    UploadTooLarge,
    error_for_code,
)
from shared.handoff import pack_input
from shared.imaging import IntakeLimits, PreprocessParams, accept_upload
from shared.queue import enqueue_predict
from shared.schemas import EXPLANATION_METHODS, Job, JobStatus
from shared.store import AsyncStore, new_job

# With no worker to say how its model preprocesses, validation only has to prove the file
# decodes; JPEG draft mode makes that cheap.
VALIDATION_DRAFT_SIDE = 256
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Upload:
    stored: bytes  # the upload itself, or a DICOM's pixels without its tags
    model_input: bytes | None  # packed for the worker, when the serving preprocessing is known
    decode_ms: float


async def decode_upload(
    data: bytes, settings: Settings, preprocessing: PreprocessParams | None
) -> Upload:
    """Decode once, off the event loop: refuse a bad file, keep the model's input."""
    limits = IntakeLimits.from_settings(settings)

    def decode() -> Upload:
        started = time.perf_counter()
        accepted = accept_upload(data, limits, preprocessing, VALIDATION_DRAFT_SIDE)
        packed = None
        if preprocessing is not None and accepted.model_input is not None:
            packed = pack_input(accepted.model_input, preprocessing)
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
        return Upload(accepted.stored, packed, elapsed_ms)

    return await run_in_threadpool(decode)


@dataclass(frozen=True)
class Intake:
    """What accepting uploads takes, for one request: where jobs are stored and queued, the
    limits, who is asking (rate limits, idempotency), the preprocessing of the live workers'
    model (the decode-once hand-off; None while no worker has said) and the rate limit."""

    store: AsyncStore
    celery: Celery
    settings: Settings
    client_scope: str = ANONYMOUS
    preprocessing: PreprocessParams | None = None
    rate_limiter: RateLimiter = RateLimiter(0)

    async def accept(self, upload: UploadFile) -> Upload:
        """Read within limits and decode once; raises the client's error for a bad file."""
        data = await read_upload(upload, self.settings)
        return await decode_upload(data, self.settings, self.preprocessing)


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(f"The upload exceeds {settings.max_upload_bytes} bytes.")
    return data


def check_method(method: str) -> str:
    if method not in EXPLANATION_METHODS:
        raise UnknownMethod(
            f"Unknown explanation method {method!r}; choose one of "
            f"{', '.join(EXPLANATION_METHODS)}."
        )
    return method


async def check_queue_depth(store: AsyncStore, settings: Settings) -> None:
    depth = await store.queue_depth(settings.queue_name)
    if depth >= settings.max_queue_depth:
        raise QueueFull(f"{depth} jobs are waiting; try again shortly.")


async def enforce_rate_limit(intake: Intake) -> None:
    """Counted before the upload is even read (`gateway.rate_limit`)."""
    await intake.rate_limiter.admit(intake.store, intake.client_scope)


async def submit(
    upload: UploadFile, method: str, intake: Intake, *, idempotency_key: str | None = None
) -> Job:
    store, settings = intake.store, intake.settings
    check_method(method)
    await enforce_rate_limit(intake)
    accepted = await intake.accept(upload)
    keys = reuse_keys(settings, intake.client_scope, method, accepted.stored, idempotency_key)
    earlier = await find_earlier(store, settings, keys) if keys else None
    if earlier is not None:
        return earlier
    await check_queue_depth(store, settings)
    return await store_and_enqueue(accepted, method, intake, keys=keys)


async def store_and_enqueue(
    upload: Upload, method: str, intake: Intake, *, keys: ReuseKeys | None = None
) -> Job:
    """A validated upload becomes a queued job; if the queue is unreachable, nothing is kept."""
    store, settings = intake.store, intake.settings
    job = new_job(str(uuid.uuid4()), settings.job_ttl_s, method)
    if upload.model_input is not None:
        job.timings_ms["decode"] = upload.decode_ms
    if keys is not None:
        earlier = await claim(store, keys, job, IN_FLIGHT_TTL_S)
        if earlier is not None:  # a concurrent twin of this request won the key
            return earlier
    try:
        links = keys.links(job.job_id) if keys else {}
        await store.create(job, upload.stored, links, upload.model_input)
        await asyncio.to_thread(enqueue_predict, intake.celery, settings, job.job_id)
    except OperationalError as error:
        await _forget(store, job, keys)
        raise QueueUnavailable("The job queue is unreachable.") from error
    except RedisError:
        await _forget(store, job, keys)
        raise
    return job


async def _forget(store: AsyncStore, job: Job, keys: ReuseKeys | None) -> None:
    """Best effort: with Redis away this fails too, and the keys' short TTLs clean up."""
    with contextlib.suppress(RedisError):
        await store.delete(job.job_id)
        if keys is not None and keys.idempotency:
            await store.forget(keys.idempotency)


async def wait_for_final(store: AsyncStore, finished: FinishedJobs, job: Job, wait_s: float) -> Job:
    """Long-poll: re-read the record each time `finished` wakes us (the job's final write, or
    the recheck interval), until it is final or time is up."""
    if job.status.is_final:
        return job
    clock = finished.clock
    deadline = clock.now() + wait_s
    with finished.watching(job.job_id) as wakeup:
        while True:
            # Watching already, so a final write landing after this read still wakes us.
            refreshed = await store.get(job.job_id)
            if refreshed is None:  # deleted meanwhile: answer with what we last saw
                return job
            job = refreshed
            time_left = deadline - clock.now()
            if job.status.is_final or time_left <= 0:
                return job
            await wakeup.wait(time_left)


def failure_as_error(job: Job) -> AppError:
    """The failed job's error, as the gateway would have answered it (`shared.errors`)."""
    assert job.status is JobStatus.failed and job.error is not None
    return error_for_code(job.error.code, job.error.message)
