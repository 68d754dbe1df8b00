"""The Celery wiring both sides share: broker settings, queue and task names.

The gateway enqueues by task name through a client-only app built here, so it never imports
worker code (or TensorFlow). Only job ids travel through the broker (claim-check pattern).
"""

from __future__ import annotations

from celery import Celery

from shared.config import Settings

PREDICT_TASK = "pneumo.predict"


def make_celery(settings: Settings, name: str = "pneumo") -> Celery:
    app = Celery(name, broker=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in the job store, not in a Celery backend
        task_default_queue=settings.queue_name,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A gateway must answer 503 quickly when Redis is away, not hang in publish retries.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        },
    )
    return app


def enqueue_predict(app: Celery, settings: Settings, job_id: str) -> None:
    app.send_task(PREDICT_TASK, args=[job_id], queue=settings.queue_name)
