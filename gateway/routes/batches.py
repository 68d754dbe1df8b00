"""Batch submission: many files in one request, all accepted or none.

Each file goes through the same intake as `POST /v1/jobs` (`gateway.submission`). Every file
is validated before anything is stored, so one bad file rejects the batch and leaves no trace.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from redis.exceptions import RedisError

from gateway.deps import (
    AuthDep,
    CallerDep,
    IdempotencyKeyDep,
    IntakeDep,
    MetricsDep,
    StoreDep,
)
from gateway.idempotency import ReuseKeys, batch_reuse_keys, claim_batch, find_earlier_batch
from gateway.routes.jobs import ERRORS, is_canonical_id
from gateway.submission import (
    Intake,
    Upload,
    check_method,
    check_queue_depth,
    enforce_rate_limit,
    store_and_enqueue,
)
from shared.batches import load_batch
from shared.config import Settings
from shared.errors import AppError, BatchNotFound, TooManyFiles, shown
from shared.schemas import Batch, BatchCreated, Job, batch_url

router = APIRouter(prefix="/v1/batches", tags=["batches"], dependencies=[AuthDep])


@router.post("", status_code=202, response_model=BatchCreated, responses=ERRORS)
async def create_batch(
    files: Annotated[list[UploadFile], File(description="Radiographs: repeat the field.")],
    response: Response,
    intake: IntakeDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
    method: Annotated[str, Form(description="gradcam, gradcam++ or eigengradcam")] = "gradcam",
) -> BatchCreated:
    check_method(method)
    check_file_count(len(files), intake.settings)
    # Each file counts as one submission against the client's rate limit; the request was
    # counted as one before its body was read (gateway.security).
    for _ in files[1:]:
        await enforce_rate_limit(intake)
    uploads = await validate_each(files, intake)
    keys = None
    if idempotency_key is not None:
        stored = [upload.stored for upload in uploads]
        keys = batch_reuse_keys(intake.client_scope, method, stored, idempotency_key)
    batch = await find_earlier_batch(intake.store, keys) if keys else None
    if batch is None:
        batch = await store_batch(uploads, method, intake, keys)
        metrics.jobs_submitted.inc(len(batch.job_ids))
    response.headers["Location"] = batch_url(batch.batch_id)
    response.headers["Retry-After"] = "1"
    return batch


@router.get("/{batch_id}", response_model=Batch, responses=ERRORS)
async def get_batch(batch_id: str, store: StoreDep, caller: CallerDep, response: Response) -> Batch:
    """Another key's batch is answered exactly as a batch that never was."""
    loaded = await load_batch(store, batch_id) if is_canonical_id(batch_id) else None
    if loaded is None or not caller.may_see(loaded[1]):
        raise BatchNotFound(f"No batch {shown(batch_id)} (it may have expired).")
    batch = loaded[0]
    if not batch.done:
        response.headers["Retry-After"] = "1"
    return batch


async def store_batch(
    uploads: list[Upload], method: str, intake: Intake, keys: ReuseKeys | None
) -> BatchCreated:
    """Validated uploads become a batch of queued jobs; the Idempotency-Key, if any, is held
    while they are stored and kept with the batch, or let go if storing fails."""
    await check_queue_depth(intake.store, intake.settings, intake.queue_depth)
    batch_id = str(uuid.uuid4())
    if keys is not None:
        earlier = await claim_batch(intake.store, keys, batch_id)
        if earlier is not None:  # a concurrent twin of this request won the key
            return earlier
    try:
        jobs = await enqueue_all(uploads, method, intake)
        batch = BatchCreated(batch_id=batch_id, job_ids=[job.job_id for job in jobs])
        links = {} if keys is None else keys.batch_links(batch_id)
        await intake.store.save_batch(batch_id, batch.job_ids, intake.owner, links)
    except (AppError, RedisError):
        if keys is not None and keys.idempotency is not None:
            with contextlib.suppress(RedisError):
                await intake.store.forget(keys.idempotency)
        raise
    return batch


def check_file_count(count: int, settings: Settings) -> None:
    if count > settings.max_batch_files:
        raise TooManyFiles(f"The batch has {count} files; the limit is {settings.max_batch_files}.")


async def validate_each(files: list[UploadFile], intake: Intake) -> list[Upload]:
    """In order, stopping at the first bad file, whose position the error names."""
    uploads = []
    for index, file in enumerate(files):
        try:
            uploads.append(await intake.accept(file))
        except AppError as error:
            error.message = f"files[{index}]: {error.message}"
            error.args = (error.message,)
            raise
    return uploads


async def enqueue_all(uploads: list[Upload], method: str, intake: Intake) -> list[Job]:
    """If the queue fails part way, the jobs already made are deleted: none or all stay."""
    jobs: list[Job] = []
    try:
        for upload in uploads:
            jobs.append(await store_and_enqueue(upload, method, intake))
    except AppError:
        # Their messages may already be queued; a worker skips a job whose record is gone.
        for job in jobs:
            await intake.store.delete(job.job_id)
        raise
    return jobs
