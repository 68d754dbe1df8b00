"""Job records and blobs (uploads, PNGs) in Redis, every key with a TTL.

Key layout, all under the configured prefix:
    {p}:job:{id}              JSON of `Job`
    {p}:blob:{id}:{name}      raw bytes (upload, heatmap, overlay)
    {p}:idem:{key}            idempotency key -> job id
    {p}:workers               hash: worker name -> heartbeat JSON (model card, time)
Both sync (worker) and asyncio (gateway) clients use the same key functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import timedelta

import redis
import redis.asyncio as aioredis

from shared.schemas import Job, JobStatus, utc_now

BLOB_NAMES = ("upload", "heatmap", "overlay")


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def blob(self, job_id: str, name: str) -> str:
        return f"{self.prefix}:blob:{job_id}:{name}"

    def all_for_job(self, job_id: str) -> list[str]:
        return [self.job(job_id), *(self.blob(job_id, name) for name in BLOB_NAMES)]

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"


def new_job(job_id: str, ttl_s: int, method: str = "gradcam") -> Job:
    created = utc_now()
    return Job(
        job_id=job_id,
        status=JobStatus.queued,
        created_at=created,
        expires_at=created + timedelta(seconds=ttl_s),
        method=method,
    )


class SyncStore:
    """The worker's view: batched reads and writes, one pipeline per step of a batch."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int):
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: int) -> SyncStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix, ttl_s)

    def load_jobs_and_uploads(self, job_ids: list[str]) -> list[tuple[Job | None, bytes | None]]:
        """One round trip for a whole batch: each job's record and its upload."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.get(self.keys.job(job_id))
            pipe.get(self.keys.blob(job_id, "upload"))
        replies = pipe.execute()
        pairs = []
        for record, upload in zip(replies[::2], replies[1::2], strict=True):
            job = Job.model_validate_json(record) if record else None
            pairs.append((job, upload))
        return pairs

    def save(self, jobs: Iterable[Job], blobs: dict[str, dict[str, bytes]] | None = None) -> None:
        """Write records and their blobs in one round trip; every key expires with its job."""
        blobs = blobs or {}
        pipe = self.client.pipeline(transaction=True)
        for job in jobs:
            ttl = self._ttl_left(job)
            pipe.set(self.keys.job(job.job_id), job.model_dump_json(), ex=ttl)
            for name, data in blobs.get(job.job_id, {}).items():
                pipe.set(self.keys.blob(job.job_id, name), data, ex=ttl)
        pipe.execute()

    def _ttl_left(self, job: Job) -> int:
        return max(1, int((job.expires_at - utc_now()).total_seconds()))

    def heartbeat(self, worker_name: str, card: dict) -> None:
        payload = json.dumps({"time": time.time(), "model": card})
        self.client.hset(self.keys.workers, worker_name, payload)

    def forget_worker(self, worker_name: str) -> None:
        self.client.hdel(self.keys.workers, worker_name)


class AsyncStore:
    """The gateway's view."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: int):
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

    async def create(self, job: Job, upload: bytes) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.blob(job.job_id, "upload"), upload, ex=self.ttl_s)
        pipe.set(self.keys.job(job.job_id), job.model_dump_json(), ex=self.ttl_s)
        await pipe.execute()

    async def get(self, job_id: str) -> Job | None:
        record = await self.client.get(self.keys.job(job_id))
        return Job.model_validate_json(record) if record else None

    async def blob(self, job_id: str, name: str) -> bytes | None:
        data: bytes | None = await self.client.get(self.keys.blob(job_id, name))
        return data

    async def delete(self, job_id: str) -> bool:
        removed: int = await self.client.delete(*self.keys.all_for_job(job_id))
        return removed > 0

    async def live_workers(self, max_age_s: float) -> dict[str, dict]:
        """Workers whose heartbeat is recent; stale entries are pruned as a side effect."""
        entries = await self.client.hgetall(self.keys.workers)
        now, live, stale = time.time(), {}, []
        for name, payload in entries.items():
            beat = json.loads(payload)
            if now - beat["time"] <= max_age_s:
                live[name.decode()] = beat
            else:
                stale.append(name)
        if stale:
            await self.client.hdel(self.keys.workers, *stale)
        return live
