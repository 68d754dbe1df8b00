"""Turning queued job ids into finished job records: the worker's logic, free of Celery.

Per batch: one Redis round trip to read records and uploads, one to mark them running, one
to write results and PNGs. One bad image fails only its own job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from shared.errors import AppError
from shared.imaging import IntakeLimits, encode_png, load_radiograph
from shared.schemas import Explanation, Job, JobError, JobStatus, Result, blob_url, utc_now
from shared.store import SyncStore
from worker.overlay import blend, colourise
from worker.runtime import ModelRuntime, Prediction

log = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def process_jobs(
    job_ids: list[str], store: SyncStore, runtime: ModelRuntime, limits: IntakeLimits
) -> BatchOutcome:
    outcome = BatchOutcome()
    pending = _claim(job_ids, store, outcome)
    if not pending:
        return outcome
    started = time.perf_counter()
    images, ready = _decode_all(pending, runtime, limits, outcome)
    decode_ms = _elapsed_ms(started)
    blobs: dict[str, dict[str, bytes]] = {}
    if ready:
        started = time.perf_counter()
        predictions = runtime.predict(np.stack(images))
        model_ms = _elapsed_ms(started) / len(ready)
        for job, image, prediction in zip(ready, images, predictions, strict=True):
            blobs[job.job_id] = _finish(job, image, prediction, runtime)
            job.timings_ms.update(decode=decode_ms / len(pending), model=model_ms)
            outcome.succeeded.append(job.job_id)
    store.save([job for job, _ in pending], blobs)
    return outcome


def _claim(job_ids: list[str], store: SyncStore, outcome: BatchOutcome) -> list[tuple[Job, bytes]]:
    """Load the batch, skip deleted or already-final jobs (redelivery), mark the rest running."""
    pending = []
    for job_id, (job, upload) in zip(job_ids, store.load_jobs_and_uploads(job_ids), strict=True):
        if job is None or job.status.is_final:
            outcome.skipped.append(job_id)
            continue
        job.status, job.started_at, job.attempts = JobStatus.running, utc_now(), job.attempts + 1
        pending.append((job, upload))
    if pending:
        store.save(job for job, _ in pending)
    return pending


def _decode_all(pending, runtime: ModelRuntime, limits: IntakeLimits, outcome: BatchOutcome):
    images, ready = [], []
    for job, upload in pending:
        try:
            if upload is None:
                raise AppError(
                    "The uploaded image expired before it was processed.", code="upload_missing"
                )
            images.append(load_radiograph(upload, runtime.card.preprocessing, limits))
            ready.append(job)
        except AppError as error:
            _fail(job, error.code, error.message)
            outcome.failed.append(job.job_id)
    return images, ready


def _finish(job: Job, image: np.ndarray, prediction: Prediction, runtime: ModelRuntime):
    """Fill in the result and explanation; return the PNGs to store with it."""
    cam = prediction.maps[job.method]
    started = time.perf_counter()
    blobs = {
        "heatmap": encode_png(colourise(cam, image.shape[0])),
        "overlay": encode_png(blend(image, cam)),
    }
    job.timings_ms["render"] = _elapsed_ms(started)
    job.result = Result(
        label=prediction.label,
        probability=prediction.probability,
        confidence=prediction.confidence,
        threshold=runtime.threshold,
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
    return blobs


def _fail(job: Job, code: str, message: str) -> None:
    job.status, job.finished_at = JobStatus.failed, utc_now()
    job.error = JobError(code=code, message=message)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
