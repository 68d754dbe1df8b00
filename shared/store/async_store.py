"""The gateway's view of the store: one job at a time, on asyncio."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from shared.blobs import AsyncS3Blobs
from shared.errors import BlobStoreUnavailable
from shared.schemas import Job
from shared.store.announcements import FinishedAnnouncements
from shared.store.keys import BLOB_NAMES, Keys, Lookup
from shared.store.memory import MemoryWatermark
from shared.store.records import parse_batch, parse_job, ttl_left
from shared.store.scripts import DELETE_JOB, SET_WHILE_JOB_LIVES

log = logging.getLogger(__name__)
SOCKET_TIMEOUT_S = 5
CONNECT_TIMEOUT_S = 2
HEALTH_CHECK_S = 30
DEFAULT_POOL_SIZE = 100
DEFAULT_POOL_WAIT_S = 5.0


class AsyncStore:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        ttl_s: int,
        subscriber: aioredis.Redis | None = None,
        watermark: MemoryWatermark | None = None,
        objects: AsyncS3Blobs | None = None,
    ):
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        # The finished-channel subscription holds its connection for good, so `from_url`
        # gives it a client of its own, outside the pool that requests share.
        self.subscriber = subscriber or client
        self.watermark = watermark or MemoryWatermark(fraction=1.0, sample_interval_s=1.0)
        # None: blobs in Redis, written atomically with the records (`shared.blobs`).
        self.objects = objects

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str,
        ttl_s: int,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_wait_s: float = DEFAULT_POOL_WAIT_S,
        watermark: MemoryWatermark | None = None,
        objects: AsyncS3Blobs | None = None,
    ) -> AsyncStore:
        """Requests share a blocking pool of `pool_size` connections: a burst larger than the
        pool waits up to `pool_wait_s` for a connection instead of failing at once."""
        timeouts: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "health_check_interval": HEALTH_CHECK_S,
        }
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=pool_wait_s, **timeouts
        )
        requests = aioredis.Redis.from_pool(pool)  # owns the pool: closed with the client
        # No retries inside redis-py for the subscription: every lost connection reaches its
        # listener (`gateway.wakeups`), which resubscribes and tells the waiters to re-read.
        subscriber = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **timeouts)
        return cls(requests, prefix, ttl_s, subscriber, watermark, objects)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.subscriber is not self.client:
            await self.subscriber.aclose()

    async def create(
        self,
        job: Job,
        upload: bytes,
        links: Mapping[Lookup, str] | None = None,
        model_input: bytes | None = None,
        extras: Mapping[str, bytes] | None = None,
        queued: tuple[str, bytes] | None = None,
    ) -> None:
        """The upload (and the model input made from it, if any, and `extras`: blobs by name,
        such as the display copy), the record, its entry in the pending index and the lookups
        (lookup -> value) that lead to it, all or nothing; with `queued` (a list's key, a
        message), the job's broker message pushed in the same transaction
        (`shared.queue.predict_message`). Lookups expire and go with the job. With object
        storage the objects go first, and are taken back if the record cannot follow: a
        record never points at objects that were not stored."""
        blobs = {"upload": upload, **({"input": model_input} if model_input is not None else {})}
        blobs.update(extras or {})
        if self.objects is None:
            await self._create_in_redis(job, blobs, links, queued)
            return
        try:
            await self.objects.put_many({job.job_id: blobs})
            await self._create_in_redis(job, {}, links, queued)
        except (RedisError, BlobStoreUnavailable):
            with contextlib.suppress(BlobStoreUnavailable):
                await self.objects.delete([job.job_id], BLOB_NAMES)
            raise

    async def _create_in_redis(
        self,
        job: Job,
        blobs: Mapping[str, bytes],
        links: Mapping[Lookup, str] | None,
        queued: tuple[str, bytes] | None = None,
    ) -> None:
        pipe = self.client.pipeline(transaction=True)
        for name, data in blobs.items():
            pipe.set(self.keys.blob(job.job_id, name), data, ex=self.ttl_s)
        if self.objects is not None:  # the sweeper deletes the objects once the job expires
            pipe.zadd(self.keys.blob_expiry, {job.job_id: job.expires_at.timestamp()})
        pipe.set(self.keys.job(job.job_id), job.record_json(), ex=self.ttl_s)
        pipe.zadd(self.keys.pending, {job.job_id: time.time()})
        for lookup, value in (links or {}).items():
            pipe.set(self.keys.lookup(lookup), value, ex=self.ttl_s)
            pipe.sadd(self.keys.refs(job.job_id), self.keys.lookup(lookup))
            pipe.expire(self.keys.refs(job.job_id), self.ttl_s)
        if queued is not None:
            pipe.lpush(*queued)
        await pipe.execute()

    async def get(self, job_id: str) -> Job | None:
        """Raises `CorruptRecord` for a record this version cannot read."""
        return parse_job(job_id, await self.client.get(self.keys.job(job_id)))

    async def blob(self, job_id: str, name: str) -> bytes | None:
        return (await self.blobs(job_id, (name,)))[0]

    async def blobs(self, job_id: str, names: Sequence[str]) -> list[bytes | None]:
        """None where a blob is missing; `BlobStoreUnavailable` if the object store is away."""
        if self.objects is not None:
            return await self.objects.get(job_id, names)
        keys = [self.keys.blob(job_id, name) for name in names]
        return cast(list, await self.client.mget(keys))

    async def keep_blob(self, job_id: str, name: str, data: bytes) -> None:
        """Store a blob made after the job finished (a picture), expiring with the job; if the
        job was deleted meanwhile, store nothing rather than leave an orphan."""
        if self.objects is None:
            await self.client.eval(
                SET_WHILE_JOB_LIVES, 2, self.keys.job(job_id), self.keys.blob(job_id, name), data
            )
            return
        if not await self.client.exists(self.keys.job(job_id)):
            return
        await self.objects.put_many({job_id: {name: data}})
        if not await self.client.exists(self.keys.job(job_id)):  # deleted while we wrote
            await self.objects.delete([job_id], (name,))

    async def delete(self, job_id: str) -> bool:
        """The record, every blob, and the lookups (idempotency, dedupe) that point at it.
        Works on a full Redis too (a script, not MULTI: `scripts.DELETE_JOB`). With the object
        store away the record still goes, and the job's objects are due at once for the
        workers' sweeper (`SyncStore.reap_expired_blobs`), which deletes them once it is back."""
        objects_gone = True
        if self.objects is not None:
            try:
                await self.objects.delete([job_id], BLOB_NAMES)
            except BlobStoreUnavailable as error:
                log.warning("Objects of deleted job %s left to the sweeper: %s", job_id, error)
                objects_gone = False
        refs = await self.client.smembers(self.keys.refs(job_id))
        keys = [*self.keys.all_for_job(job_id), *refs, self.keys.pending]
        removed = await self.client.eval(DELETE_JOB, len(keys), *keys, job_id)
        if not objects_gone:
            await self.client.zadd(self.keys.blob_expiry, {job_id: time.time()})
        elif self.objects is not None:
            await self.client.zrem(self.keys.blob_expiry, job_id)
        return int(removed) > 0

    @property
    def presigns(self) -> bool:
        return self.objects is not None and self.objects.presigning is not None

    async def presigned_url(self, job_id: str, name: str) -> str | None:
        """A presigned URL of the stored blob for a client (`PNEUMO_S3_PRESIGN`); None where
        blobs are not presigned or this one is not stored (yet)."""
        if self.objects is None or self.objects.presigning is None:
            return None
        if not await self.objects.exists(job_id, name):
            return None
        return await self.objects.signed_url(job_id, name)

    async def blobs_reachable(self) -> bool:
        """The object store answers (always, with blobs in Redis: Redis is checked apart)."""
        return self.objects is None or await self.objects.reachable()

    async def memory_high(self) -> bool:
        """Redis is above the memory watermark: time to refuse new jobs (`store.memory`)."""
        return await self.watermark.is_high(self.client)

    async def claim(self, lookup: Lookup, value: str, ttl_s: int) -> bytes | None:
        """Set `lookup` only if absent, atomically; return the value someone else set first."""
        key = self.keys.lookup(lookup)
        return cast(bytes | None, await self.client.set(key, value, ex=ttl_s, nx=True, get=True))

    async def find(self, lookup: Lookup) -> bytes | None:
        return cast(bytes | None, await self.client.get(self.keys.lookup(lookup)))

    async def forget(self, lookup: Lookup) -> None:
        await self.client.delete(self.keys.lookup(lookup))

    async def add_ref(self, job: Job, lookup: Lookup) -> None:
        """Make `lookup` go when the job is deleted."""
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.keys.refs(job.job_id), self.keys.lookup(lookup))
        pipe.expire(self.keys.refs(job.job_id), ttl_left(job))
        await pipe.execute()

    async def save_batch(
        self,
        batch_id: str,
        job_ids: list[str],
        owner: str | None = None,
        links: Mapping[Lookup, str] | None = None,
    ) -> None:
        """A batch is its jobs' ids and their owner (`Job.owner`), kept with the jobs' TTL;
        never file names (they can carry a patient's name). The lookups (lookup -> value) that
        lead to it are written with it and expire with it."""
        listed = json.dumps({"job_ids": job_ids, "owner": owner})
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.batch(batch_id), listed, ex=self.ttl_s)
        for lookup, value in (links or {}).items():
            pipe.set(self.keys.lookup(lookup), value, ex=self.ttl_s)
        await pipe.execute()

    async def load_batch(
        self, batch_id: str
    ) -> tuple[list[str], list[Job | None], str | None] | None:
        """The batch's job ids, their records (None where gone) and its owner, in two round
        trips."""
        listed = await self.client.get(self.keys.batch(batch_id))
        if listed is None:
            return None
        job_ids, owner = parse_batch(listed)
        records = await self.client.mget([self.keys.job(job_id) for job_id in job_ids])
        jobs = [parse_job(job_id, record) for job_id, record in zip(job_ids, records, strict=True)]
        return job_ids, jobs, owner

    async def count_submission(self, client: str, window: int, window_s: int) -> int:
        """Count one submission by `client` in rate-limit window number `window`; the count so
        far. The first submission in a window starts its expiry."""
        key = self.keys.rate(client, window)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        count, _ = await pipe.execute()
        return int(count)

    async def queue_depth(self, queue_name: str) -> int:
        depth: int = await self.client.llen(queue_name)
        return depth

    async def result_counts(self) -> dict[str, int]:
        """Results finished so far, by assessment, by every worker since the store began."""
        counts = await self.client.hgetall(self.keys.result_counts)
        return {cast(bytes, name).decode(): int(count) for name, count in counts.items()}

    async def delivery_counts(self) -> dict[str, int]:
        """DICOM result deliveries by outcome (`SyncStore.update_delivery`), ever."""
        counts = await self.client.hgetall(self.keys.deliveries)
        return {cast(bytes, name).decode(): int(count) for name, count in counts.items()}

    async def live_workers(self, max_age_s: float) -> dict[str, dict]:
        """Workers whose heartbeat is recent; stale entries are pruned as a side effect."""
        entries = await self.client.hgetall(self.keys.workers)
        now, live, stale = time.time(), {}, []
        for name, payload in entries.items():
            beat = json.loads(payload)
            if now - beat["time"] <= max_age_s:
                live[cast(bytes, name).decode()] = beat
            else:
                stale.append(name)
        if stale:
            await self.client.hdel(self.keys.workers, *stale)
        return live

    @asynccontextmanager
    async def finished_announcements(self) -> AsyncIterator[FinishedAnnouncements]:
        """Subscribe to the ids of jobs whose final state lands; the first announcement is
        Redis's confirmation. Pub/sub delivers at most once: nothing sent while this is not
        entered is ever received."""
        async with self.subscriber.pubsub() as pubsub:
            await pubsub.subscribe(self.keys.finished_channel)
            yield FinishedAnnouncements(pubsub)
