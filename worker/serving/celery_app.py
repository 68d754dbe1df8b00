"""The worker's Celery application: `celery -A worker.serving.celery_app worker --pool=threads ...`.

Run one process per GPU with `--pool=threads`: a pool thread runs each batch while the consumer
keeps fetching messages for the next. The pool has `PNEUMO_BATCHES_IN_FLIGHT` threads (1; 2 on
a GPU), so leave `--concurrency` out. The model is built after start-up in that process and
held for its lifetime.

`create_worker_app(settings)` builds the app. Celery reads this module's `app` attribute, and
that first read builds it from the settings read then (once per process): importing the module
reads no environment.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery, signals
from celery.worker.consumer import Consumer

from shared.config import Settings, get_settings
from shared.queue import enqueue_predict, make_celery
from worker.serving.overrides import (
    OverridesDecision,
    decide_overrides,
    installed_versions,
    report,
)

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings, overrides: OverridesDecision | None = None) -> Celery:
    """The worker's app, its tasks registered; `overrides` defaults to what the installed
    kombu and celery-batches allow (`worker.serving.overrides`)."""
    if overrides is None:
        overrides = decide_overrides(settings, installed_versions())
    app = make_celery(settings, "pneumo-worker")
    # One pool thread per batch in flight. Celery prefetches the multiplier times the pool size:
    # two batches' worth at one in flight (the batch and a full next one gathering behind it),
    # six at two, the configuration bench/RESULTS.md measured on a GPU.
    app.conf.worker_concurrency = settings.batches_in_flight
    app.conf.worker_prefetch_multiplier = (settings.batches_in_flight + 1) * settings.batch_size
    if overrides.transport:  # never with RabbitMQ (`worker.serving.overrides`)
        # kombu's Redis transport with acknowledgements (and, optionally, fetches) batched.
        app.conf.broker_transport = "worker.serving.transport:Transport"
        app.conf.broker_transport_options = app.conf.broker_transport_options | {
            "multi_pop": settings.broker_multi_pop
        }
    adaptive_batching = overrides.batching

    def register_tasks_when_finalized(**_: object) -> None:
        # Imported only now: the tasks bring the model's libraries, which Celery's control
        # commands (the healthcheck's `celery inspect ping`) never need.
        from worker.serving.tasks import register_tasks

        register_tasks(app, settings, adaptive_batching)

    app.on_after_finalize.connect(register_tasks_when_finalized, weak=False)
    return app


@lru_cache(maxsize=1)
def process_overrides() -> OverridesDecision:
    return decide_overrides(get_settings(), installed_versions())


@lru_cache(maxsize=1)
def worker_app() -> Celery:
    return create_worker_app(get_settings(), process_overrides())


def __getattr__(name: str) -> Celery:
    # `celery -A worker.serving.celery_app` looks up `app` here: built on that first look-up.
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@signals.celeryd_after_setup.connect
def report_overrides(**_: object) -> None:
    # Here, not where the app is built: Celery has not set up logging by then.
    report(process_overrides())


@signals.worker_ready.connect
def load_model_and_announce(sender: Consumer, **_: object) -> None:
    from worker.serving.context import get_context

    context = get_context()
    context.start_heartbeat()
    context.start_sweeper(lambda job_id: enqueue_predict(sender.app, context.settings, job_id))
    log.info("Worker %s ready with model %s", context.name, context.runtime.card.version)


@signals.worker_shutdown.connect
def deregister(**_: object) -> None:
    from worker.serving.context import get_context

    if get_context.cache_info().currsize:
        get_context().stop()
