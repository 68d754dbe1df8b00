"""The Celery wiring both sides share: broker settings, queue and task names.

The gateway enqueues by task name through a client-only app built here, so it never imports
worker code (or TensorFlow). Only job ids travel through the broker (claim-check pattern).
Where the broker is the records' Redis (the default), the gateway writes Celery's message
itself, in the transaction that stores the job (`predict_message`): the same bytes, queued
with the record or not at all, and a fraction of the publish's CPU.

The broker is Redis (`redis_url`, or another Redis in `broker_url`) or RabbitMQ (`broker_url`
`amqp://...`): there the queue is a quorum queue (replicated, durable, redelivered by the broker
itself when a consumer's connection closes), every publish waits for the broker's confirm, and
none of the Redis transport's settings apply (docs/scaling.md).
"""

from __future__ import annotations

import base64
import json
import uuid

from amqp.exceptions import MessageNacked
from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.exceptions import OperationalError

from shared.config import Settings

PREDICT_TASK = "pneumo.predict"
# Sending a job's DICOM results to the PACS (`gateway.dicom_delivery`), on its own queue.
DELIVER_TASK = "pneumo.deliver_dicom"
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
# How long a publish waits for RabbitMQ's confirm; past it, kombu's publish retries, then fails.
CONFIRM_TIMEOUT_S = 5.0


def broker_url(settings: Settings) -> str:
    return settings.broker_url or settings.redis_url


def uses_amqp(settings: Settings) -> bool:
    """RabbitMQ (or another AMQP 0-9-1 broker) rather than Redis."""
    return broker_url(settings).partition("://")[0] in AMQP_SCHEMES


def make_celery(settings: Settings, name: str = "pneumo") -> Celery:
    app = Celery(name, broker=broker_url(settings))
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
        # Celery would cancel its own active late-ack requests on a lost connection; batch
        # requests are not among them (a batch that loses Redis hands itself back, see
        # worker.serving.tasks), so keep today's behaviour explicitly and without the warning.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A gateway must answer 503 quickly when Redis is away, not hang in publish retries.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
    )
    if uses_amqp(settings):
        app.conf.update(amqp_options())
    else:
        app.conf.broker_transport_options = transport_options(settings)
    return app


def amqp_options() -> dict[str, object]:
    """RabbitMQ: the queue (declared alike by the gateway, which publishes first, and the
    worker) is a quorum queue; a publish returns once the broker has the message (a lost
    confirm raises, so the gateway answers 503 and keeps nothing); acknowledgements are the
    broker's own. Celery sees the quorum queue and turns global QoS off (quorum queues refuse
    it): the prefetch limit is per consumer."""
    return {
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        # With a quorum queue Celery also declares its native delayed-delivery exchanges and
        # queues (for countdown/ETA tasks, which this service never sends): classic ones are
        # the cheaper to declare. Its start-up warning that delayed delivery does not support
        # the direct exchange is harmless for the same reason.
        "broker_native_delayed_delivery_queue_type": "classic",
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_timeout": 5,
    }


def transport_options(settings: Settings) -> dict[str, float | bool]:
    """Redis (broker) transport settings for at-least-once delivery.

    A late-acked message stays in Redis' `unacked` hash until acknowledged; any worker moves
    entries older than the visibility timeout back to the queue. kombu scans for them only
    every interval x throttle seconds (100 s by default), so a job of a killed worker would
    wait up to that long on top of the timeout: scan every quarter of the timeout instead
    (at most every 10 s; one ZRANGE each). The scan's mutex must not outlive the timeout, or a
    worker killed while holding it blocks every restore that long. `broker_ack_emulation`
    off drops that bookkeeping altogether (see `Settings`).
    """
    timeout = settings.visibility_timeout_s
    return {
        "visibility_timeout": timeout,
        "ack_emulation": settings.broker_ack_emulation,
        "unacked_restore_interval": max(1, min(10, timeout // 4)),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": min(300, timeout),
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }


def enqueue_predict(app: Celery, settings: Settings, job_id: str) -> None:
    """Publish one job id. Any failure is kombu's `OperationalError` (the gateway's 503, the
    worker's retry): with RabbitMQ that includes a publish the broker refused (a nack, e.g. a
    queue at its length limit) and a confirm that did not come in time (a broker blocked by
    its memory or disk alarm), which would otherwise raise something else, or hang."""
    if not uses_amqp(settings):
        app.send_task(PREDICT_TASK, args=[job_id], queue=settings.queue_name)
        return
    try:
        app.send_task(PREDICT_TASK, args=[job_id], queue=settings.queue_name,
                      confirm_timeout=CONFIRM_TIMEOUT_S)  # fmt: skip
    except MessageNacked as error:
        raise OperationalError(f"The broker refused job {job_id} (nack).") from error


def publishes_with_the_record(settings: Settings) -> bool:
    """The broker is the records' own Redis (the default). Then the gateway pushes a job's
    message in the transaction that stores the job (`predict_message`, `AsyncStore.create`):
    stored and queued together or not at all, for a fraction of the CPU of Celery's publish
    (about 1 ms a job from the gateway's thread pool, `python -m bench.enqueue`)."""
    return not settings.broker_url or settings.broker_url == settings.redis_url


def predict_message(app: Celery, settings: Settings, job_id: str) -> bytes:
    """The message `enqueue_predict` has Celery push onto the Redis queue for `job_id`: Celery's
    task protocol 2 in kombu's Redis envelope, byte for byte but for its fresh ids (checked
    against a real publish by tests/integration/test_direct_publish.py, for the pinned
    Celery and kombu)."""
    task_id = str(uuid.uuid4())
    body = json.dumps(
        [[job_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    headers = {
        "lang": "py", "task": PREDICT_TASK, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": repr([job_id]), "kwargsrepr": "{}", "origin": anon_nodename(),
        "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None,
        "stamps": {},
    }  # fmt: skip
    properties = {
        "correlation_id": task_id, "reply_to": app.thread_oid, "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": settings.queue_name},
        "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
    }  # fmt: skip
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(envelope).encode()


def delivery_configured(settings: Settings) -> bool:
    """A PACS to send DICOM results to is set (C-STORE or STOW-RS)."""
    return bool(settings.dicom_destination or settings.dicomweb_destination)


def enqueue_delivery(app: Celery, settings: Settings, job_id: str) -> None:
    app.send_task(DELIVER_TASK, args=[job_id], queue=settings.delivery_queue_name)
