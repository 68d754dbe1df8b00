"""The worker's Celery application: `celery -A worker.serving.celery_app worker --pool=threads ...`.

Run one process per GPU with `--pool=threads`: a pool thread runs each batch while the consumer
keeps fetching messages for the next. The pool has `PNEUMO_BATCHES_IN_FLIGHT` threads (1; 2 on
a GPU), so leave `--concurrency` out. The model is built after start-up in that process and
held for its lifetime.
"""

from __future__ import annotations

import logging

from celery import signals

from shared.config import get_settings
from shared.queue import enqueue_predict, make_celery

settings = get_settings()
app = make_celery(settings, "pneumo-worker")
# One pool thread per batch in flight. Celery prefetches the multiplier times the pool size:
# two batches' worth at one in flight (the batch and a full next one gathering behind it), six
# at two, the configuration bench/RESULTS.md measured on a GPU.
app.conf.worker_concurrency = settings.batches_in_flight
app.conf.worker_prefetch_multiplier = (settings.batches_in_flight + 1) * settings.batch_size
app.conf.include = ["worker.serving.tasks"]
# kombu's Redis transport with acknowledgements (and, optionally, fetches) batched.
app.conf.broker_transport = "worker.serving.transport:Transport"
app.conf.broker_transport_options = app.conf.broker_transport_options | {
    "multi_pop": settings.broker_multi_pop
}

log = logging.getLogger(__name__)


@signals.worker_ready.connect
def load_model_and_announce(**_: object) -> None:
    from worker.serving.context import get_context

    context = get_context()
    context.start_heartbeat()
    context.start_sweeper(lambda job_id: enqueue_predict(app, settings, job_id))
    log.info("Worker %s ready with model %s", context.name, context.runtime.card.version)


@signals.worker_shutdown.connect
def deregister(**_: object) -> None:
    from worker.serving.context import get_context

    if get_context.cache_info().currsize:
        get_context().stop()
