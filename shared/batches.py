"""Batches: a list of ordinary jobs under one id, kept beside them in the store.

A batch holds ids only, never file names (they can carry a patient's name), and its status is
computed from the job records on every read, so it cannot drift from them.
"""

from __future__ import annotations

from collections import Counter

from shared.schemas import Batch, Job, JobStatus
from shared.store import AsyncStore

EXPIRED = "expired"


async def load_batch(store: AsyncStore, batch_id: str) -> tuple[Batch, str | None] | None:
    """The batch with its counts and its owner (`Job.owner`), from one read of the list and
    one of its records."""
    stored = await store.load_batch(batch_id)
    if stored is None:
        return None
    job_ids, jobs, owner = stored
    return summarise(batch_id, job_ids, jobs), owner


def summarise(batch_id: str, job_ids: list[str], jobs: list[Job | None]) -> Batch:
    counts = Counter({status.value: 0 for status in JobStatus} | {EXPIRED: 0})
    counts.update(job.status.value if job else EXPIRED for job in jobs)
    pending = counts[JobStatus.queued.value] + counts[JobStatus.running.value]
    return Batch(batch_id=batch_id, job_ids=job_ids, counts=dict(counts), done=pending == 0)
