"""End-to-end redelivery: no accepted job waits for ever, whatever the broker dropped.

Celery over Redis is at least once only between the queue and a worker's `unacked` hash: a
message popped by BRPOP is recorded there by a second command, so a worker killed, or a Redis
that stops, between the two loses it. The gateway therefore also indexes every accepted job in
`{p}:pending` (score: when it was queued), and the final write removes it. Workers take turns
sweeping: a job still pending long after it was queued (twice the visibility timeout, by which
time kombu's own restore has had its chance) is queued again. Extra copies are harmless: a
final job is skipped, and `max_deliveries` bounds the retries of one that never finishes.
With `broker_ack_emulation` off there is no `unacked` hash, and the sweeper alone brings back
a killed worker's jobs, after one visibility timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from shared.config import Settings
from shared.errors import BlobStoreUnavailable, CorruptRecord
from shared.store import Loaded, SyncStore

log = logging.getLogger(__name__)


def stale_after_s(settings: Settings) -> float:
    """With kombu's ack emulation on, its own restore gets the visibility timeout first; off,
    the sweeper is what brings a killed worker's jobs back, so it does not wait twice."""
    return (2.0 if settings.broker_ack_emulation else 1.0) * settings.visibility_timeout_s


def sweep_interval_s(settings: Settings) -> float:
    return max(1.0, min(30.0, settings.visibility_timeout_s / 4))


def sweep_once(
    store: SyncStore,
    enqueue: Callable[[str], None],
    older_than_s: float,
    take_turn: Callable[[], bool] = lambda: True,
) -> int:
    """Queue every stale unfinished job again; forget deleted and finished ones. Returns the
    number queued again. Workers take turns only when there is something to do, so a healthy
    system writes nothing here."""
    stale = store.stale_pending(older_than_s)
    if not stale or not take_turn():
        return 0
    jobs = store.load_jobs(stale)
    waiting = [job_id for job_id, job in zip(stale, jobs, strict=True) if _unfinished(job)]
    gone = sorted(set(stale) - set(waiting))  # deleted, expired or finished
    if gone:
        store.forget_pending(gone)
    for job_id in waiting:
        enqueue(job_id)
    if waiting:
        store.mark_requeued(waiting)
        log.warning("Queued %d unfinished jobs again (their messages were lost)", len(waiting))
    return len(waiting)


def _unfinished(job: Loaded) -> bool:
    """An unreadable record counts: the worker it goes to fails the job, saying why."""
    return isinstance(job, CorruptRecord) or (job is not None and not job.status.is_final)


def reap_blobs(store: SyncStore) -> int:
    """Delete the objects of expired (or deleted) jobs, with blobs in object storage. Every
    worker may: a job reaped twice costs one idempotent DeleteObjects."""
    try:
        return store.reap_expired_blobs()
    except (RedisError, BlobStoreUnavailable) as error:
        log.warning("Deleting expired objects failed: %s", error)
        return 0


def start_sweeper(
    store: SyncStore, enqueue: Callable[[str], None], settings: Settings, worker_name: str,
    stop: threading.Event,
) -> threading.Thread:  # fmt: skip
    """A daemon thread; like the heartbeat it outlives Redis and broker outages."""
    interval = sweep_interval_s(settings)

    def take_turn() -> bool:
        return store.take_sweep_turn(worker_name, interval)

    def sweep_forever() -> None:
        while not stop.wait(interval):
            try:
                sweep_once(store, enqueue, stale_after_s(settings), take_turn)
            except (RedisError, OperationalError) as error:
                log.warning("Sweep of pending jobs failed: %s", error)
            reap_blobs(store)

    thread = threading.Thread(target=sweep_forever, name="pending-sweeper", daemon=True)
    thread.start()
    return thread
