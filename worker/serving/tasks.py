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

A batch that Redis or the object store refused (full, read-only, unreachable) is handed back
after a pause that doubles with each consecutive refusal (`StoreBackoff`), so a full Redis
slows the worker down instead of spinning it or stopping it; the first batch that goes through
resets the pause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from celery import Celery, Task
from celery_batches import SimpleRequest
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from shared.config import Settings
from shared.errors import BlobStoreUnavailable
from shared.queue import PREDICT_TASK, enqueue_predict
from worker.serving.batching import batch_task_options
from worker.serving.context import WorkerContext, get_context
from worker.serving.pipeline import BatchOutcome, process_jobs
from worker.serving.time_limits import BatchTimeLimitExceeded, Deadline

log = logging.getLogger(__name__)
# A store or broker that just failed rarely answers within a second; waiting this long between
# tries keeps an outage from turning into a hot loop of redeliveries.
RETRY_PAUSE_S = 1.0
# The longest pause between refused batches; also kept under a quarter of the visibility
# timeout, so the held messages are not restored to another worker meanwhile.
MAX_RETRY_PAUSE_S = 30.0


class StoreBackoff:
    """Pauses after consecutive batches that Redis refused: 1 s, 2 s, 4 s ... up to a cap."""

    def __init__(self, first_s: float = RETRY_PAUSE_S, most_s: float = MAX_RETRY_PAUSE_S):
        self.first_s, self.most_s = first_s, most_s
        self.refusals = 0
        self._lock = threading.Lock()  # batches in flight share it

    def refused(self, cap_s: float | None = None) -> float:
        """Count a refusal; the pause before handing the batch back."""
        with self._lock:
            self.refusals += 1
            pause = self.first_s * 2 ** min(self.refusals - 1, 16)
        return min(pause, self.most_s, cap_s if cap_s is not None else self.most_s)

    def went_through(self) -> None:
        with self._lock:
            self.refusals = 0


# One per worker process: every batch sees the same Redis.
STORE_BACKOFF = StoreBackoff()


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
    except (RedisError, BlobStoreUnavailable) as error:
        pause_s = STORE_BACKOFF.refused(context.settings.visibility_timeout_s / 4)
        log.warning("Batch of %d handed back in %.0f s: %s: %s",
                    len(job_ids), pause_s, type(error).__name__, error)  # fmt: skip
        hand_back_after(pause_s)
    except Exception:
        # A bug or a model failure: retried like a lost worker, so `max_deliveries` bounds it.
        log.exception("Batch of %d failed", len(job_ids))
        hand_back_after(RETRY_PAUSE_S)
    else:
        STORE_BACKOFF.went_through()
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
        log.warning("Could not queue job %s again (broker down or full): %s", job_id, error)
        return False
    return True
