"""Turning queued job ids into finished job records: the worker's logic, free of Celery.

Per batch: one Redis round trip to read the records and the model inputs the gateway made
(`shared.handoff`), one to mark the jobs running, one to write the results and explanation
maps; and one more only for jobs without a usable input, whose uploads are decoded here. One
bad image fails only its own job. Pictures are drawn later, by the gateway, on request.

The object store failing mid-batch (`shared.blobs`) releases the claimed jobs unchanged and
hands the batch back, as a Redis failure does.

Delivery is at least once, so every write is conditional (`SyncStore.write_unless_final`):
a job that another delivery already finished, or that its owner deleted, is left alone, and
a job delivered more than `max_deliveries` times ends `failed` with code `worker_lost`. A job
whose record cannot be read ends `failed` with code `corrupt_record`, the error the gateway
answers for it too.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from shared.errors import (
    AppError,
    BlobStoreUnavailable,
    CorruptImage,
    CorruptRecord,
    UploadMissing,
    WorkerLost,
)
from shared.geometry import placement_of
from shared.handoff import pack_input, pack_map, unpack_input
from shared.imaging import (
    IntakeLimits,
    border_box_of,
    decode_grayscale,
    decode_memory,
    model_draft_side,
    preprocess,
)
from shared.schemas import (
    Explanation,
    Job,
    JobError,
    JobStatus,
    OodResult,
    Result,
    blob_url,
    utc_now,
)
from shared.store import SyncStore, Write, new_job
from worker.model.runtime import ModelRuntime, Prediction
from worker.serving.time_limits import Deadline

log = logging.getLogger(__name__)
# A claimed job and the model input the gateway stored for it, if any (`shared.handoff`).
Pending = list[tuple[Job, bytes | None]]


@dataclass
class BatchOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def process_jobs(
    job_ids: list[str],
    store: SyncStore,
    runtime: ModelRuntime,
    limits: IntakeLimits,
    *,
    max_deliveries: int = 3,
    deadline: Deadline | None = None,
    intake: Executor | None = None,
) -> BatchOutcome:
    """Raises `BatchTimeLimitExceeded` past the deadline and Redis errors as they come: the
    caller then hands the batch back to the queue; nothing final has been written."""
    deadline = deadline or Deadline.never()
    outcome = BatchOutcome()
    # The same job can arrive twice in one batch (a redelivery next to its original).
    pending = _claim(list(dict.fromkeys(job_ids)), store, outcome, max_deliveries)
    if not pending:
        return outcome
    try:
        blobs = _compute(pending, store, runtime, limits, deadline, intake or _SERIAL)
        deadline.check("writing the results")
        _write_final([job for job, _ in pending], blobs, store, outcome)
    except BlobStoreUnavailable:
        _release([job for job, _ in pending], store)
        raise
    return outcome


def _release(jobs: list[Job], store: SyncStore) -> None:
    """The object store failed after the jobs were claimed: queue them again as they were, so
    an outage of the object store does not use up their `max_deliveries` (a Redis outage
    cannot: the claim itself fails then)."""
    released = [
        job.model_copy(update={"status": JobStatus.queued, "started_at": None,
                               "finished_at": None, "attempts": max(0, job.attempts - 1),
                               "result": None, "explanation": None, "error": None})
        for job in jobs
    ]  # fmt: skip
    store.write_unless_final([Write(job) for job in released])


def _claim(
    job_ids: list[str], store: SyncStore, outcome: BatchOutcome, max_deliveries: int
) -> Pending:
    """Load the batch, skip deleted or already-final jobs (redelivery), fail unreadable or
    exhausted ones, mark the rest running."""
    claims: Pending = []
    failing: list[Job] = []
    loaded = store.load_jobs_and_blobs(job_ids, "input")
    for job_id, (job, model_input) in zip(job_ids, loaded, strict=True):
        if isinstance(job, CorruptRecord):  # its failed record replaces the unreadable one
            failing.append(_fail(new_job(job_id, store.ttl_s), job))
        elif job is None or job.status.is_final:
            outcome.skipped.append(job_id)
        elif job.attempts >= max_deliveries:
            failing.append(_fail(job, WorkerLost(_lost_message(job.attempts))))
        else:
            job.status, job.started_at = JobStatus.running, utc_now()
            job.attempts += 1
            claims.append((job, model_input))
    if failing:
        _write_final(failing, {}, store, outcome)
    landed = store.write_unless_final([Write(job) for job, _ in claims]) if claims else []
    for (job, _), claimed in zip(claims, landed, strict=True):
        if not claimed:  # finished by another delivery or deleted since we read it
            outcome.skipped.append(job.job_id)
    return [pair for pair, claimed in zip(claims, landed, strict=True) if claimed]


def _lost_message(attempts: int) -> str:
    return (
        f"The job was started {attempts} times and never finished: its worker stopped or "
        "could not save the result each time. Submit it again."
    )


def _compute(
    pending: Pending,
    store: SyncStore,
    runtime: ModelRuntime,
    limits: IntakeLimits,
    deadline: Deadline,
    intake: Executor,
) -> dict[str, dict[str, bytes]]:
    """Prepare the inputs and predict; returns the blobs to store for the jobs that succeeded."""
    deadline.check("preparing the inputs")
    inputs = _prepare_inputs(pending, store, runtime, limits, intake)
    ready = [job for job, _ in pending if job.job_id in inputs]
    if not ready:
        return {}
    deadline.check("running the model")
    started = time.perf_counter()
    predictions = runtime.predict(np.stack([inputs[job.job_id].pixels for job in ready]))
    model_ms = _elapsed_ms(started) / len(ready)
    blobs: dict[str, dict[str, bytes]] = {}
    for job, prediction in zip(ready, predictions, strict=True):
        prepared = inputs[job.job_id]
        job.timings_ms["model"] = model_ms
        blobs[job.job_id] = {"cam": pack_map(prediction.maps[job.method])}
        if prepared.decoded_here:  # the gateway's pictures are drawn on the input the model saw
            job.timings_ms["decode"] = prepared.decode_ms
            blobs[job.job_id]["input"] = pack_input(prepared.pixels, runtime.card.preprocessing)
            blobs[job.job_id]["placement"] = prepared.placement
        _succeed(job, prediction, runtime)
    return blobs


@dataclass(frozen=True)
class _Input:
    pixels: np.ndarray
    decoded_here: bool
    decode_ms: float = 0.0
    placement: bytes = b""  # where the pixels came from on the film, when decoded here


def _prepare_inputs(
    pending: Pending,
    store: SyncStore,
    runtime: ModelRuntime,
    limits: IntakeLimits,
    intake: Executor,
) -> dict[str, _Input]:
    """Job id -> model input: the gateway's when made for this model's preprocessing, else
    decoded here from the upload (in parallel threads). A bad file fails only its own job."""
    params = runtime.card.preprocessing
    inputs: dict[str, _Input] = {}
    to_decode: list[Job] = []
    for job, stored in pending:
        pixels = unpack_input(stored, params)
        if pixels is None:
            to_decode.append(job)
        else:
            inputs[job.job_id] = _Input(pixels, decoded_here=False)
    if not to_decode:
        return inputs
    started = time.perf_counter()
    uploads = store.load_blobs([job.job_id for job in to_decode], "upload")

    def decode_one(pair: tuple[Job, bytes | None]) -> tuple[np.ndarray, bytes] | AppError:
        try:
            return _decode(*pair, runtime, limits)
        except AppError as error:
            return error

    decoded = list(intake.map(decode_one, zip(to_decode, uploads, strict=True)))
    decode_ms = _elapsed_ms(started) / len(to_decode)
    for job, result in zip(to_decode, decoded, strict=True):
        if isinstance(result, AppError):
            _fail(job, result)
        else:
            pixels, placement = result
            inputs[job.job_id] = _Input(pixels, True, decode_ms, placement)
    return inputs


def _decode(
    job: Job, upload: bytes | None, runtime: ModelRuntime, limits: IntakeLimits
) -> tuple[np.ndarray, bytes]:
    """`load_radiograph`'s pixels, and their placement on the film for the gateway's pictures."""
    if upload is None:
        raise UploadMissing("The uploaded image expired before it was processed.")
    params = runtime.card.preprocessing
    draft_side = model_draft_side(params)
    try:
        with decode_memory(upload, limits, draft_side):  # the worker's decode budget
            gray = decode_grayscale(upload, limits, draft_side)
            box = border_box_of(gray, params)
            return preprocess(gray, params, box), placement_of(gray, params, box).to_bytes()
    except AppError:
        raise
    except Exception as error:
        # The gateway decoded this file once already, so this is a decoder quirk; it must fail
        # this one job, not the batch (which would be handed back and fail again, for ever).
        log.warning("Job %s: decoder raised %s", job.job_id, type(error).__name__)
        raise CorruptImage("The image could not be decoded.") from error


def _succeed(job: Job, prediction: Prediction, runtime: ModelRuntime) -> None:
    job.result = Result(
        assessment=_assessment(prediction),
        label=prediction.label,
        probability=prediction.probability,
        confidence=prediction.confidence,
        threshold=runtime.threshold,
        ood=None if prediction.ood is None else OodResult(**vars(prediction.ood)),
        model=runtime.card.info(),
    )
    job.explanation = Explanation(
        method=job.method,
        target=prediction.label,
        layer=runtime.card.last_conv_layer,
        heatmap_url=blob_url(job.job_id, "heatmap"),
        overlay_url=blob_url(job.job_id, "overlay"),
    )
    job.status, job.finished_at = JobStatus.succeeded, utc_now()


def _assessment(prediction: Prediction):
    if prediction.ood is None:
        return "not_assessed"
    return "out_of_distribution" if prediction.ood.flagged else "in_distribution"


def _write_final(
    jobs: list[Job], blobs: dict[str, dict[str, bytes]], store: SyncStore, outcome: BatchOutcome
) -> None:
    writes = [Write(job, blobs.get(job.job_id, {})) for job in jobs]
    for job, landed in zip(jobs, store.write_unless_final(writes), strict=True):
        if not landed:
            outcome.skipped.append(job.job_id)
        elif job.status is JobStatus.succeeded:
            outcome.succeeded.append(job.job_id)
        else:
            outcome.failed.append(job.job_id)


class _SerialExecutor(Executor):
    """`map` in the calling thread, for callers (tests, tools) that bring no thread pool."""

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return list(map(fn, *iterables))


_SERIAL = _SerialExecutor()


def _fail(job: Job, error: AppError) -> Job:
    job.status, job.finished_at = JobStatus.failed, utc_now()
    job.error = JobError(code=error.code, message=error.message)
    return job


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
