"""Celery tasks: thin glue from queue messages to `worker.pipeline`.

`pneumo.predict` is a celery-batches task: the worker buffers up to `PNEUMO_BATCH_SIZE` messages
or `PNEUMO_BATCH_WAIT_MS` and hands them over as one list, so one model call serves them all.
Messages are acknowledged after the batch is written (late acks); a redelivered job that is
already final is skipped, which makes the task idempotent.
"""

from __future__ import annotations

import logging

from celery_batches import Batches, SimpleRequest

from shared.config import get_settings
from shared.queue import PREDICT_TASK
from worker.celery_app import app
from worker.context import get_context
from worker.pipeline import process_jobs

log = logging.getLogger(__name__)
settings = get_settings()


@app.task(
    base=Batches,
    name=PREDICT_TASK,
    flush_every=settings.batch_size,
    flush_interval=settings.batch_wait_ms / 1000.0,
    acks_late=True,
)
def predict(requests: list[SimpleRequest]) -> None:
    job_ids = [request.args[0] for request in requests]
    context = get_context()
    outcome = process_jobs(job_ids, context.store, context.runtime, context.limits)
    log.info(
        "Batch of %d: %d succeeded, %d failed, %d skipped",
        len(job_ids),
        len(outcome.succeeded),
        len(outcome.failed),
        len(outcome.skipped),
    )
