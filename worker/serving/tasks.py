"""Celery tasks: thin glue from queue messages to `worker.serving.pipeline`.

`pneumo.predict` is a celery-batches task, registered on the worker's app when it is built
(`worker.serving.celery_app`), adaptive where `worker.serving.overrides` allows
(`worker.serving.batching`): while the model is busy the worker keeps buffering messages, and
the next batch takes everything buffered; an idle worker flushes after `PNEUMO_BATCH_WAIT_MS`.
One model call serves a whole batch.

Delivery is at least once. Messages are acknowledged after the batch returns (late acks); a
worker that dies first leaves them unacknowledged in Redis, and another worker gets them after
the visibility timeout. A redelivered job that is already final is skipped, and final writes
are conditional, so each job gets exactly one final answer. celery-batches acknowledges a
batch even when the task failed, so a batch that could not be finished is put back on the
queue here, before that acknowledgement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import Celery, Task
from celery_batches import SimpleRequest
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from shared.config import Settings
from shared.queue import PREDICT_TASK, enqueue_predict
from worker.serving.batching import batch_task_options
from worker.serving.context import WorkerContext, get_context
from worker.serving.pipeline import BatchOutcome, process_jobs
from worker.serving.time_limits import BatchTimeLimitExceeded, Deadline

log = logging.getLogger(__name__)
# A store or broker that just failed rarely answers within a second; waiting this long between
# tries keeps an outage from turning into a hot loop of redeliveries.
RETRY_PAUSE_S = 1.0


def register_tasks(app: Celery, settings: Settings, adaptive_batching: bool) -> None:
    """`pneumo.predict` on the worker's app, batched as `worker.serving.batching` decides."""
    options = batch_task_options(settings, adaptive_batching)
    app.task(name=PREDICT_TASK, bind=True, **options)(predict)


def predict(task: Task, requests: list[SimpleRequest]) -> None:
    job_ids = job_ids_of(requests)
    context = get_context()

    def hand_back_after(pause_s: float) -> None:
        hand_back(job_ids, pause_s, context.settings.visibility_timeout_s,
                  lambda job_id: enqueue_predict(task.app, context.settings, job_id))  # fmt: skip

    try:
        outcome = run_batch(job_ids, context)
    except BatchTimeLimitExceeded as error:
        log.warning("Batch of %d handed back: %s", len(job_ids), error)
        hand_back_after(0)
    except RedisError as error:
        log.warning("Batch of %d handed back: %s: %s", len(job_ids), type(error).__name__, error)
        hand_back_after(RETRY_PAUSE_S)
    except Exception:
        # A bug or a model failure: retried like a lost worker, so `max_deliveries` bounds it.
        log.exception("Batch of %d failed", len(job_ids))
        hand_back_after(RETRY_PAUSE_S)
    else:
        log.info(
            "Batch of %d: %d succeeded, %d failed, %d skipped",
            len(job_ids),
            len(outcome.succeeded),
            len(outcome.failed),
            len(outcome.skipped),
        )


def job_ids_of(requests: list[SimpleRequest]) -> list[str]:
    """The job ids carried by the messages; a malformed message is dropped (acknowledged)."""
    job_ids = []
    for request in requests:
        if len(request.args) == 1 and isinstance(request.args[0], str):
            job_ids.append(request.args[0])
        else:
            log.warning("Dropping a message without a job id (task id %s)", request.id)
    return job_ids


def run_batch(job_ids: list[str], context: WorkerContext) -> BatchOutcome:
    config = context.settings
    deadline = Deadline.after(config.batch_soft_time_limit_s)
    with context.watchdog.guard(config.batch_hard_time_limit_s):
        return process_jobs(
            job_ids,
            context.store,
            context.runtime,
            context.limits,
            max_deliveries=config.max_deliveries,
            deadline=deadline,
            intake=context.intake,
        )


def hand_back(job_ids: list[str], pause_s: float, give_up_after_s: float,
              enqueue: Callable[[str], None]) -> None:  # fmt: skip
    """Queue the jobs again before their messages are acknowledged.

    While the broker is unreachable this keeps trying, up to the visibility timeout
    (`give_up_after_s`); if it is still away then, the acknowledgement fails too and Redis
    itself restores the messages.
    """
    give_up_at = time.monotonic() + give_up_after_s
    time.sleep(pause_s)
    for job_id in job_ids:
        while not _enqueue_once(enqueue, job_id):
            if time.monotonic() > give_up_at:
                log.error("Gave up queueing a batch again; Redis will restore its messages.")
                return
            time.sleep(RETRY_PAUSE_S)


def _enqueue_once(enqueue: Callable[[str], None], job_id: str) -> bool:
    try:
        enqueue(job_id)
    except OperationalError as error:
        log.warning("Broker unreachable while handing back job %s: %s", job_id, error)
        return False
    return True
