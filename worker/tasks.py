"""Celery tasks: thin glue from queue messages to `worker.pipeline`.

`pneumo.predict` is an adaptive celery-batches task (`worker.batching`): while the model is busy
the worker keeps buffering messages, and the next batch takes everything buffered; an idle
worker flushes after `PNEUMO_BATCH_WAIT_MS`. One model call serves a whole batch.
Messages are acknowledged after the batch is written (late acks); a redelivered job that is
already final is skipped, which makes the task idempotent.
"""

from __future__ import annotations

import logging

from celery_batches import SimpleRequest

from shared.config import get_settings
from shared.queue import PREDICT_TASK
from worker.batching import AdaptiveBatches
from worker.celery_app import app
from worker.context import get_context
from worker.pipeline import process_jobs

log = logging.getLogger(__name__)
settings = get_settings()


@app.task(
    base=AdaptiveBatches,
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
