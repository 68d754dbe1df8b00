"""Batches: a list of ordinary jobs under one id, kept beside them in Redis.

Key: {p}:batch:{id} -> JSON list of job ids, with the jobs' TTL. A batch holds ids only, never
file names (they can carry a patient's name), and its status is computed from the job records
on every read, so it cannot drift from them.
"""

from __future__ import annotations

import json
from collections import Counter

from shared.schemas import Batch, Job, JobStatus
from shared.store import AsyncStore

EXPIRED = "expired"


def batch_key(store: AsyncStore, batch_id: str) -> str:
    return f"{store.keys.prefix}:batch:{batch_id}"


async def save_batch(store: AsyncStore, batch_id: str, job_ids: list[str]) -> None:
    await store.client.set(batch_key(store, batch_id), json.dumps(job_ids), ex=store.ttl_s)


async def load_batch(store: AsyncStore, batch_id: str) -> Batch | None:
    """The batch with its counts, from one read of the list and one MGET of its records."""
    listed = await store.client.get(batch_key(store, batch_id))
    if listed is None:
        return None
    job_ids: list[str] = json.loads(listed)
    records = await store.client.mget([store.keys.job(job_id) for job_id in job_ids])
    jobs = [Job.model_validate_json(record) if record else None for record in records]
    return summarise(batch_id, job_ids, jobs)


def summarise(batch_id: str, job_ids: list[str], jobs: list[Job | None]) -> Batch:
    counts = Counter({status.value: 0 for status in JobStatus} | {EXPIRED: 0})
    counts.update(job.status.value if job else EXPIRED for job in jobs)
    pending = counts[JobStatus.queued.value] + counts[JobStatus.running.value]
    return Batch(batch_id=batch_id, job_ids=job_ids, counts=dict(counts), done=pending == 0)
