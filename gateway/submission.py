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
from dataclasses import dataclass, field

from celery import Celery
from fastapi import Request, UploadFile
from kombu.exceptions import OperationalError
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.concurrency import run_in_threadpool

from gateway.idempotency import IN_FLIGHT_TTL_S, ReuseKeys, claim, find_earlier, reuse_keys
from gateway.queue_depth import QueueDepth
from gateway.rate_limit import RateLimiter
from gateway.wakeups import FinishedJobs
from shared.config import Settings
from shared.decode_budget import AsyncDecodeBudget
from shared.dicom_header import SOURCE_HEADER_BLOB, source_header
from shared.display import display_copy
from shared.errors import (
    AppError,
    BlobStoreUnavailable,
    DuplicateFilePart,
    QueueFull,
    QueueUnavailable,
    StoreFull,
    StoreUnavailable,
    UnknownMethod,
    UploadTooLarge,
    error_for_code,
    shown,
)
from shared.geometry import placement_of
from shared.handoff import pack_input
from shared.imaging import (
    IntakeLimits,
    PreprocessParams,
    accept_upload,
    decode_cost,
    intake_draft_side,
    sniff_format,
)
from shared.queue import (
    delivery_configured,
    enqueue_delivery,
    enqueue_predict,
    predict_message,
    publishes_with_the_record,
)
from shared.schemas import EXPLANATION_METHODS, Delivery, Job, JobStatus
from shared.store import AsyncStore, new_job

# With no worker to say how its model preprocesses, validation only has to prove the file
# decodes; JPEG draft mode makes that cheap.
VALIDATION_DRAFT_SIDE = 256
# What a film from the DICOM network is explained with: the HTTP routes' default.
DICOM_METHOD = "gradcam"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Upload:
    stored: bytes  # the upload itself, or a DICOM's pixels without its tags
    model_input: bytes | None  # packed for the worker, when the serving preprocessing is known
    decode_ms: float
    # What pictures are drawn on (`shared.display`), and where the model input came from on it
    # (`shared.geometry`, with the model input).
    extras: dict[str, bytes] = field(default_factory=dict)


async def decode_upload(
    data: bytes,
    settings: Settings,
    preprocessing: PreprocessParams | None,
    budget: AsyncDecodeBudget | None = None,
    *,
    keep_dicom_header: bool = False,
) -> Upload:
    """`decode_once`, off the event loop. With a `budget`, first wait (up to `decode_wait_s`,
    then 503) until the decode's memory fits."""
    if budget is None:
        return await run_in_threadpool(
            decode_once, data, settings, preprocessing, keep_dicom_header
        )
    limits = IntakeLimits.from_settings(settings)
    cost = await run_in_threadpool(_decode_cost, data, limits, settings, preprocessing)
    async with budget.reserve(cost, settings.decode_wait_s):
        return await run_in_threadpool(
            decode_once, data, settings, preprocessing, keep_dicom_header
        )


def decode_once(
    data: bytes,
    settings: Settings,
    preprocessing: PreprocessParams | None,
    keep_dicom_header: bool = False,
) -> Upload:
    """Refuse a bad file; keep the model's input, the display copy and the placement. With
    `keep_dicom_header`, `data` must be DICOM, and its header is kept with the job
    (`shared.dicom_header`). All a gateway's CPU for one upload, but for HTTP and Redis."""
    started = time.perf_counter()
    limits = IntakeLimits.from_settings(settings)
    header = source_header(data) if keep_dicom_header else None
    accepted = accept_upload(data, limits, preprocessing, VALIDATION_DRAFT_SIDE)
    packed, decoded = None, accepted.decoded
    assert decoded is not None
    extras = {"display": display_copy(data, decoded, limits, settings.display_max_side)}
    if header is not None:
        extras[SOURCE_HEADER_BLOB] = header
    if preprocessing is not None and accepted.model_input is not None:
        packed = pack_input(accepted.model_input, preprocessing)
        placement = placement_of(decoded, preprocessing, accepted.border_box)
        extras["placement"] = placement.to_bytes()
    elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
    return Upload(accepted.stored, packed, elapsed_ms, extras)


def _decode_cost(
    data: bytes, limits: IntakeLimits, settings: Settings, preprocessing: PreprocessParams | None
) -> int:
    """What `decode_upload` holds at most: its decode, and for a JPEG drafted smaller than the
    display copy, the display's own decode beside it (`shared.display`)."""
    cost = decode_cost(data, limits, intake_draft_side(preprocessing, VALIDATION_DRAFT_SIDE))
    if sniff_format(data) == "jpeg":
        cost += decode_cost(data, limits, settings.display_max_side)
    return cost


@dataclass(frozen=True)
class Intake:
    """What accepting uploads takes, for one request: where jobs are stored and queued, the
    limits, who is asking (rate limits, idempotency), the preprocessing of the live workers'
    model (the decode-once hand-off; None while no worker has said), the rate limit, and the
    owner its jobs record (the key's digest, `gateway.security`; None with keys off)."""

    store: AsyncStore
    celery: Celery
    settings: Settings
    client_scope: str = ANONYMOUS
    preprocessing: PreprocessParams | None = None
    rate_limiter: RateLimiter = RateLimiter(0)
    owner: str | None = None
    decode_budget: AsyncDecodeBudget | None = None  # the process's (`shared.decode_budget`)
    queue_depth: QueueDepth | None = None  # the process's; None: the queue is in the store

    async def accept(self, upload: UploadFile) -> Upload:
        """Read within limits and decode once; raises the client's error for a bad file."""
        data = await read_upload(upload, self.settings)
        return await decode_upload(data, self.settings, self.preprocessing, self.decode_budget)


async def one_file_part(request: Request) -> None:
    """Several `file` parts: FastAPI would keep the last silently; say so instead. The form
    is parsed already (FastAPI reads the body before it runs dependencies)."""
    count = len((await request.form()).getlist("file"))
    if count > 1:
        raise DuplicateFilePart(
            f"The request holds {count} `file` parts; send one, or several to /v1/batches."
        )


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(f"The upload exceeds {settings.max_upload_bytes} bytes.")
    return data


def check_method(method: str) -> str:
    if method not in EXPLANATION_METHODS:
        raise UnknownMethod(
            f"Unknown explanation method {shown(method)}; choose one of "
            f"{', '.join(EXPLANATION_METHODS)}."
        )
    return method


async def check_queue_depth(
    store: AsyncStore, settings: Settings, queue_depth: QueueDepth | None = None
) -> None:
    """Refuse new jobs while too many wait, or while Redis is nearly full (`store.memory`):
    the memory left is the workers', to finish the jobs already accepted. `queue_depth`
    reads the broker's queue (`gateway.queue_depth`; pass `Intake.queue_depth`); without it,
    the records' Redis holds the queue."""
    if await store.memory_high():
        raise StoreFull("The job store is nearly full; try again shortly.")
    if queue_depth is None:
        depth = await store.queue_depth(settings.queue_name)
    else:
        depth = await queue_depth.read(store)
    if depth >= settings.max_queue_depth:
        raise QueueFull(f"{depth} jobs are waiting; try again shortly.")


async def enforce_rate_limit(intake: Intake) -> None:
    """One more submission (`gateway.rate_limit`). The request itself was counted before its
    body was read (`gateway.security.Guard`); a batch's further files are counted here."""
    await intake.rate_limiter.admit(intake.store, intake.client_scope)


async def submit(
    upload: UploadFile, method: str, intake: Intake, *, idempotency_key: str | None = None
) -> Job:
    store, settings = intake.store, intake.settings
    check_method(method)
    accepted = await intake.accept(upload)
    keys = reuse_keys(settings, intake.client_scope, method, accepted.stored, idempotency_key)
    earlier = await find_earlier(store, settings, keys) if keys else None
    if earlier is not None:
        return earlier
    await check_queue_depth(store, settings, intake.queue_depth)
    return await store_and_enqueue(accepted, method, intake, keys=keys)


async def submit_dicom(data: bytes, intake: Intake, method: str = DICOM_METHOD) -> Job:
    """One instance from the DICOM network (`gateway.dicom_listener`, STOW-RS): the upload's
    limits, decode budget, errors and overload refusals, its header kept for the results.
    No result dedupe: two instances with the same pixels belong to two studies, and each
    study gets its own results."""
    store, settings = intake.store, intake.settings
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(f"The instance exceeds {settings.max_upload_bytes} bytes.")
    await check_queue_depth(store, settings, intake.queue_depth)  # before the decode: no CPU
    accepted = await decode_upload(
        data, settings, intake.preprocessing, intake.decode_budget, keep_dicom_header=True
    )
    return await store_and_enqueue(accepted, method, intake)


async def store_and_enqueue(
    upload: Upload, method: str, intake: Intake, *, keys: ReuseKeys | None = None
) -> Job:
    """A validated upload becomes a queued job, or nothing is kept: stored but not queued (the
    queue unreachable, Redis full) is taken back. The failure is always an `AppError`, so a
    batch takes back the jobs it made before (`routes.batches.enqueue_all`)."""
    store, settings = intake.store, intake.settings
    job = new_job(str(uuid.uuid4()), settings.job_ttl_s, method)
    job.owner = intake.owner
    if SOURCE_HEADER_BLOB in upload.extras and delivery_configured(settings):
        job.delivery = Delivery(state="pending")  # its results go to the PACS
    if upload.model_input is not None:
        job.timings_ms["decode"] = upload.decode_ms
    if keys is not None:
        earlier = await claim(store, keys, job, IN_FLIGHT_TTL_S)
        if earlier is not None:  # a concurrent twin of this request won the key
            return earlier
    queued = None
    if publishes_with_the_record(settings):
        queued = (settings.queue_name, predict_message(intake.celery, settings, job.job_id))
    try:
        links = keys.links(job.job_id) if keys else {}
        await store.create(job, upload.stored, links, upload.model_input, upload.extras, queued)
        if queued is None:  # another broker: Celery's own publish, with its confirms
            await asyncio.to_thread(enqueue_predict, intake.celery, settings, job.job_id)
        if job.delivery is not None:  # queued with the job: no job's results are forgotten
            await asyncio.to_thread(enqueue_delivery, intake.celery, settings, job.job_id)
    except (OperationalError, RedisError, BlobStoreUnavailable) as error:
        await _forget(store, job, keys)
        raise _refusal(error) from error
    return job


def _refusal(error: Exception) -> AppError:
    if isinstance(error, AppError):  # the object store's own refusal, as it is
        return error
    # kombu wraps Redis's errors in its OperationalError: a full Redis is seen through it.
    if isinstance(error, OutOfMemoryError) or isinstance(error.__cause__, OutOfMemoryError):
        return StoreFull("The job store is full; try again shortly.")
    if isinstance(error, OperationalError):
        return QueueUnavailable("The job queue is unreachable.")
    return StoreUnavailable("The job store is unavailable; try again shortly.")


async def _forget(store: AsyncStore, job: Job, keys: ReuseKeys | None) -> None:
    """Best effort: with Redis away this fails too, and the keys' short TTLs clean up. A full
    Redis still takes deletions (`AsyncStore.delete`)."""
    with contextlib.suppress(RedisError):
        await store.delete(job.job_id)
    if keys is not None and keys.idempotency:
        with contextlib.suppress(RedisError):
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
