"""Accepting an upload: read within limits, validate by decoding once, store, enqueue.

A rejected upload stores nothing; an upload that cannot be enqueued is removed again.
"""

from __future__ import annotations

import asyncio
import uuid

from celery import Celery
from fastapi import UploadFile
from kombu.exceptions import OperationalError
from starlette.concurrency import run_in_threadpool

from shared.config import Settings
from shared.errors import AppError, BadRequest, Overloaded, PayloadTooLarge, ServiceUnavailable
from shared.imaging import IntakeLimits, decode_grayscale
from shared.queue import enqueue_predict
from shared.schemas import EXPLANATION_METHODS, Job, JobStatus
from shared.store import AsyncStore, new_job

# Validation only has to prove the file decodes; JPEG draft mode makes that cheap.
VALIDATION_DRAFT_SIDE = 256
QUEUE_FULL_RETRY_AFTER_S = 5


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"The upload exceeds {settings.max_upload_bytes} bytes.", code="upload_too_large"
        )
    return data


async def validate_image(data: bytes, settings: Settings) -> None:
    limits = IntakeLimits(max_pixels=settings.max_pixels, min_side=settings.min_side)
    await run_in_threadpool(decode_grayscale, data, limits, VALIDATION_DRAFT_SIDE)


def check_method(method: str) -> str:
    if method not in EXPLANATION_METHODS:
        raise BadRequest(
            f"Unknown explanation method {method!r}; choose one of "
            f"{', '.join(EXPLANATION_METHODS)}.",
            code="unknown_method",
        )
    return method


async def check_queue_depth(store: AsyncStore, settings: Settings) -> None:
    depth = await store.client.llen(settings.queue_name)
    if depth >= settings.max_queue_depth:
        raise Overloaded(f"{depth} jobs are waiting; try again shortly.", code="queue_full")


async def submit(
    upload: UploadFile, method: str, store: AsyncStore, celery: Celery, settings: Settings
) -> Job:
    check_method(method)
    data = await read_upload(upload, settings)
    await validate_image(data, settings)
    await check_queue_depth(store, settings)
    job = new_job(str(uuid.uuid4()), settings.job_ttl_s, method)
    await store.create(job, data)
    try:
        await asyncio.to_thread(enqueue_predict, celery, settings, job.job_id)
    except OperationalError as error:
        await store.delete(job.job_id)
        raise ServiceUnavailable(
            "The job queue is unreachable.", code="queue_unavailable"
        ) from error
    return job


async def wait_for_final(store: AsyncStore, job: Job, wait_s: float) -> Job:
    """Long-poll: re-read the record with a growing pause until it is final or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    pause = 0.01
    while not job.status.is_final and loop.time() < deadline:
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 1.5, 0.2)
        refreshed = await store.get(job.job_id)
        if refreshed is None:
            break
        job = refreshed
    return job


# Worker-side failure codes that describe the client's file rather than the service.
CLIENT_FAILURE_CODES = {"corrupt_image", "image_too_small", "empty_file", "unsupported_format"}


def failure_as_error(job: Job) -> AppError:
    assert job.status is JobStatus.failed and job.error is not None
    status = 422 if job.error.code in CLIENT_FAILURE_CODES else 503
    return AppError(job.error.message, code=job.error.code, status=status)
