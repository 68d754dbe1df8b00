"""The worker's view of the store: batched reads and writes, one pipeline per step of a batch.

With blobs in object storage (`shared.blobs`), a step's objects are read or written in one
concurrent round beside its pipeline: a batch's maps and inputs go up before the records that
name them, so a record never points at objects that were not stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import cast

import redis

from shared.blobs import S3Blobs
from shared.errors import BlobStoreUnavailable
from shared.schemas import Delivery, Job
from shared.store.keys import BLOB_NAMES, Keys
from shared.store.records import Loaded, Write, load_job, parse_job, ttl_left
from shared.store.scripts import WRITE_UNLESS_FINAL

log = logging.getLogger(__name__)


class SyncStore:
    def __init__(
        self, client: redis.Redis, prefix: str, ttl_s: int, objects: S3Blobs | None = None
    ):
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        # None: blobs in Redis, written atomically with the records (`shared.blobs`).
        self.objects = objects

    @classmethod
    def from_url(
        cls, url: str, prefix: str, ttl_s: int, objects: S3Blobs | None = None
    ) -> SyncStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix, ttl_s, objects)

    def load_jobs_and_blobs(
        self, job_ids: list[str], name: str
    ) -> list[tuple[Loaded, bytes | None]]:
        """One round trip for a whole batch: each job's record and one of its blobs."""
        if self.objects is not None:
            return list(zip(self.load_jobs(job_ids), self.load_blobs(job_ids, name), strict=True))
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.get(self.keys.job(job_id))
            pipe.get(self.keys.blob(job_id, name))
        replies = pipe.execute()
        return [
            (load_job(job_id, record), blob)
            for job_id, record, blob in zip(job_ids, replies[::2], replies[1::2], strict=True)
        ]

    def load_blobs(self, job_ids: Sequence[str], name: str) -> list[bytes | None]:
        if not job_ids:
            return []
        if self.objects is not None:
            return self.objects.get_many(job_ids, name)
        return cast(list, self.client.mget([self.keys.blob(job_id, name) for job_id in job_ids]))

    def blobs(self, job_id: str, names: Sequence[str]) -> list[bytes | None]:
        if self.objects is not None:
            return self.objects.get(job_id, names)
        return cast(list, self.client.mget([self.keys.blob(job_id, name) for name in names]))

    def update_delivery(self, job_id: str, delivery: Delivery, outcome: str = "") -> bool:
        """Set the job's delivery state (`gateway.dicom_delivery`), its TTL kept, and count
        `outcome` for /metrics in the same transaction. False, writing nothing, when the job is
        gone: a deleted job is not brought back. Raises `CorruptRecord` for an unreadable one."""
        key = self.keys.job(job_id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    job = parse_job(job_id, cast(bytes | None, pipe.get(key)))
                    if job is None:
                        return False
                    job.delivery = delivery
                    pipe.multi()
                    pipe.set(key, job.record_json(), keepttl=True)
                    if outcome:
                        pipe.hincrby(self.keys.deliveries, outcome, 1)
                    if delivery.state == "pending":
                        pipe.zadd(self.keys.deliveries_pending, {job_id: time.time()})
                    else:
                        pipe.zrem(self.keys.deliveries_pending, job_id)
                    pipe.execute()
                    return True
                except redis.WatchError:  # the record changed meanwhile: read it again
                    continue

    def touch_delivery(self, job_id: str) -> None:
        """A delivery was looked at now (`stale_deliveries`)."""
        self.client.zadd(self.keys.deliveries_pending, {job_id: time.time()})

    def forget_delivery(self, job_id: str) -> None:
        self.client.zrem(self.keys.deliveries_pending, job_id)

    def stale_deliveries(self, older_than_s: float, limit: int = 1000) -> list[str]:
        """Pending deliveries nobody looked at for `older_than_s`: their message was lost."""
        cutoff = time.time() - older_than_s
        found = self.client.zrangebyscore(self.keys.deliveries_pending, "-inf", cutoff, start=0,
                                          num=limit)  # fmt: skip
        return [cast(bytes, job_id).decode() for job_id in cast(list, found)]

    def load_jobs(self, job_ids: Sequence[str]) -> list[Loaded]:
        records = cast(list, self.client.mget([self.keys.job(job_id) for job_id in job_ids]))
        return [load_job(job_id, record) for job_id, record in zip(job_ids, records, strict=True)]

    def write_unless_final(self, writes: Sequence[Write]) -> list[bool]:
        """One round trip; each write is atomic and refused if its job is final or deleted.

        Two workers holding the same redelivered job can both try: exactly one final answer
        lands. The returned flags say which writes landed.
        """
        if self.objects is not None:
            return self._write_with_objects(writes)
        return self._write_records(writes)

    def _write_records(self, writes: Sequence[Write]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for write in writes:
            names = write.key_names(self.keys)
            pipe.eval(WRITE_UNLESS_FINAL, len(names), *names, *write.values(self.keys))
        return [bool(landed) for landed in pipe.execute()]

    def _write_with_objects(self, writes: Sequence[Write]) -> list[bool]:
        """Objects first (one concurrent round), then the records, which name them. A
        refused write may have overwritten a finished job's objects with its twin's (the same
        model on the same input: the same bytes)."""
        assert self.objects is not None
        blobs = {each.job.job_id: each.blobs for each in writes if each.blobs}
        if blobs:  # a claim writes none
            self.objects.put_many(blobs)
        landed = self._write_records([Write(each.job) for each in writes])
        outcomes = list(zip(writes, landed, strict=True))
        finished = [each.job.job_id for each, ok in outcomes if ok and each.job.status.is_final]
        refused = [each.job.job_id for each, ok in outcomes if not ok and each.blobs]
        try:
            self._tidy_objects(finished, refused)
        except BlobStoreUnavailable as error:  # the sweeper deletes them when the job expires
            log.warning("Could not tidy the objects of %d jobs: %s", len(writes), error)
        return landed

    def _tidy_objects(self, finished: list[str], refused: list[str]) -> None:
        """A final job's upload is no longer needed (as the Redis backend drops it in the same
        script); a refused job that is gone (deleted meanwhile) takes its objects with it."""
        assert self.objects is not None
        if finished:
            self.objects.delete(finished, ("upload",))
        loaded = self.load_jobs(refused) if refused else []
        gone = [job_id for job_id, job in zip(refused, loaded, strict=True) if job is None]
        if gone:
            self.objects.delete(gone, BLOB_NAMES)

    def reap_expired_blobs(self, limit: int = 1000) -> int:
        """Delete the objects of jobs whose TTL has passed (their records expired in Redis by
        themselves); the number of jobs reaped. Nothing to do with blobs in Redis."""
        if self.objects is None:
            return 0
        due = self.client.zrangebyscore(self.keys.blob_expiry, "-inf", time.time(), 0, limit)
        job_ids = [cast(bytes, job_id).decode() for job_id in cast(list, due)]
        if job_ids:
            self.objects.delete(job_ids, BLOB_NAMES)
            self.client.zrem(self.keys.blob_expiry, *job_ids)
        return len(job_ids)

    def save(
        self,
        jobs: Iterable[Job],
        blobs: dict[str, dict[str, bytes]] | None = None,
        *,
        pending: bool = False,
    ) -> None:
        """Unconditional writes (seeding a queue, tools); every key expires with its job.
        `pending`: also file the jobs in the pending index, as the gateway files each job."""
        blobs = blobs or {}
        jobs = list(jobs)
        if self.objects is not None:
            self.objects.put_many(blobs)
        pipe = self.client.pipeline(transaction=True)
        for job in jobs:
            ttl = ttl_left(job)
            pipe.set(self.keys.job(job.job_id), job.record_json(), ex=ttl)
            if self.objects is not None:
                pipe.zadd(self.keys.blob_expiry, {job.job_id: job.expires_at.timestamp()})
            else:
                for name, data in blobs.get(job.job_id, {}).items():
                    pipe.set(self.keys.blob(job.job_id, name), data, ex=ttl)
            if pending:
                pipe.zadd(self.keys.pending, {job.job_id: time.time()})
        pipe.execute()

    def pending_count(self) -> int:
        """Jobs accepted and not yet final: one command, however many there are."""
        return int(self.client.zcard(self.keys.pending))

    def stale_pending(self, older_than_s: float, limit: int = 1000) -> list[str]:
        """Unfinished jobs last queued longer ago than `older_than_s`, oldest first."""
        cutoff = time.time() - older_than_s
        job_ids = self.client.zrangebyscore(self.keys.pending, "-inf", cutoff, start=0, num=limit)
        return [cast(bytes, job_id).decode() for job_id in cast(list, job_ids)]

    def mark_requeued(self, job_ids: Sequence[str]) -> None:
        """Restart their clocks, so a job is queued again at most once per sweep interval."""
        self.client.zadd(self.keys.pending, dict.fromkeys(job_ids, time.time()), xx=True)

    def forget_pending(self, job_ids: Sequence[str]) -> None:
        self.client.zrem(self.keys.pending, *job_ids)

    def take_sweep_turn(self, worker_name: str, turn_s: float) -> bool:
        """At most one worker sweeps per turn; the others skip it."""
        return bool(
            self.client.set(self.keys.sweep_turn, worker_name, nx=True, px=int(turn_s * 1000))
        )

    def result_counts(self) -> dict[str, int]:
        """Results finished so far, by assessment (`AsyncStore.result_counts`)."""
        counts = cast(dict, self.client.hgetall(self.keys.result_counts))
        return {cast(bytes, name).decode(): int(count) for name, count in counts.items()}

    def heartbeat(self, worker_name: str, card: dict) -> None:
        payload = json.dumps({"time": time.time(), "model": card})
        self.client.hset(self.keys.workers, worker_name, payload)

    def forget_worker(self, worker_name: str) -> None:
        self.client.hdel(self.keys.workers, worker_name)

    def announced_workers(self) -> list[str]:
        """Every worker with a heartbeat entry, however old (`AsyncStore.live_workers` judges
        which are live)."""
        return [cast(bytes, name).decode() for name in self.client.hkeys(self.keys.workers)]
