"""Job records and blobs (uploads, PNGs) in Redis, every key with a TTL.

Key layout, all under the configured prefix:
    {p}:job:{id}              JSON of `Job`
    {p}:blob:{id}:{name}      bytes: upload, input (model input), cam (map), heatmap, overlay
    {p}:finals:{id}           how many times a final state was written: 1, or a job was duplicated
    {p}:refs:{id}             set of the lookup keys below that point at this job, erased with it
    {p}:idem:{digest}         a client's Idempotency-Key -> job id + request fingerprint
    {p}:dedupe:{digest}       a client's image + method -> job id (when result dedupe is on)
    {p}:rate:{client}:{n}     submissions by one client in rate-limit window n
    {p}:pending               sorted set: unfinished job id -> when it was last queued
    {p}:sweep-turn            which worker sweeps `pending` next (worker.serving.recovery)
    {p}:workers               hash: worker name -> heartbeat JSON (model card, time)
    {p}:finished              pub/sub channel, not a key: the id of each job whose final state
                              landed, for the gateways' long polls (gateway.wakeups)
Both sync (worker) and asyncio (gateway) clients use the same key functions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from shared.schemas import Job, JobStatus, utc_now

log = logging.getLogger(__name__)
# upload: as sent (a DICOM without its tags), kept only until the job is final; input and
# cam: `shared.handoff`; heatmap and overlay: PNGs, drawn by the gateway on first request.
BLOB_NAMES = ("upload", "input", "cam", "heatmap", "overlay")

# Write a job record (and its blobs) unless the stored record is gone (deleted: do not bring it
# back) or already final (another delivery finished first: do not overwrite its answer). A
# final write also counts itself, so a duplicate would show, leaves the pending index, and
# announces the job id on the finished channel, so long polls wake at once (gateway.wakeups);
# a refused write announces nothing. The channel is an ARGV: channels are not keys.
# A final write also drops the upload: pictures and input.png are drawn from the model input,
# and an upload is most of a job's memory (300 KB against 20 KB) for the rest of its TTL.
# KEYS: record, final-write counter, pending index, upload, blob...
# ARGV: JSON, ttl, "final" or "claim", job id, finished channel, blob...
WRITE_UNLESS_FINAL = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local status = cjson.decode(current)['status']
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for index = 5, #KEYS do
  redis.call('SET', KEYS[index], ARGV[index + 1], 'EX', ARGV[2])
end
if ARGV[3] == 'final' then
  redis.call('DEL', KEYS[4])
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('PUBLISH', ARGV[5], ARGV[4])
end
return 1
"""

# KEYS: job record, blob; ARGV: blob bytes. The blob gets whatever time the record has left.
SET_WHILE_JOB_LIVES = """
local ttl = redis.call('TTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
return 1
"""


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def blob(self, job_id: str, name: str) -> str:
        return f"{self.prefix}:blob:{job_id}:{name}"

    def finals(self, job_id: str) -> str:
        return f"{self.prefix}:finals:{job_id}"

    def refs(self, job_id: str) -> str:
        return f"{self.prefix}:refs:{job_id}"

    def all_for_job(self, job_id: str) -> list[str]:
        blobs = [self.blob(job_id, name) for name in BLOB_NAMES]
        return [self.job(job_id), *blobs, self.finals(job_id), self.refs(job_id)]

    def idempotency(self, digest: str) -> str:
        return f"{self.prefix}:idem:{digest}"

    def dedupe(self, digest: str) -> str:
        return f"{self.prefix}:dedupe:{digest}"

    def rate(self, client: str, window: int) -> str:
        return f"{self.prefix}:rate:{client}:{window}"

    @property
    def pending(self) -> str:
        return f"{self.prefix}:pending"

    @property
    def sweep_turn(self) -> str:
        return f"{self.prefix}:sweep-turn"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def finished_channel(self) -> str:
        return f"{self.prefix}:finished"


def new_job(job_id: str, ttl_s: int, method: str = "gradcam") -> Job:
    created = utc_now()
    return Job(
        job_id=job_id,
        status=JobStatus.queued,
        created_at=created,
        expires_at=created + timedelta(seconds=ttl_s),
        method=method,
    )


def ttl_left(job: Job) -> int:
    """Seconds until the job expires: every key written later still expires with the job."""
    return max(1, int((job.expires_at - utc_now()).total_seconds()))


@dataclass
class Write:
    """One job's record (and blobs) for `SyncStore.write_unless_final`."""

    job: Job
    blobs: dict[str, bytes] = field(default_factory=dict)

    def key_names(self, keys: Keys) -> list[str]:
        job_id = self.job.job_id
        names = [keys.job(job_id), keys.finals(job_id), keys.pending, keys.blob(job_id, "upload")]
        return names + [keys.blob(job_id, name) for name in self.blobs]

    def values(self, keys: Keys) -> list[str | bytes | int]:
        stage = "final" if self.job.status.is_final else "claim"
        head: list[str | bytes | int] = [self.job.model_dump_json(), ttl_left(self.job)]
        return [*head, stage, self.job.job_id, keys.finished_channel, *self.blobs.values()]


def _parse_job(job_id: str, record: bytes | None) -> Job | None:
    """A record this version cannot read counts as gone, so its message cannot loop for ever."""
    if record is None:
        return None
    try:
        return Job.model_validate_json(record)
    except ValidationError:
        log.error("Job %s has an unreadable record; skipping it.", job_id)
        return None


class SyncStore:
    """The worker's view: batched reads and writes, one pipeline per step of a batch."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int):
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: int) -> SyncStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix, ttl_s)

    def load_jobs_and_blobs(
        self, job_ids: list[str], name: str
    ) -> list[tuple[Job | None, bytes | None]]:
        """One round trip for a whole batch: each job's record and one of its blobs."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.get(self.keys.job(job_id))
            pipe.get(self.keys.blob(job_id, name))
        replies = pipe.execute()
        return [
            (_parse_job(job_id, record), blob)
            for job_id, record, blob in zip(job_ids, replies[::2], replies[1::2], strict=True)
        ]

    def load_blobs(self, job_ids: Sequence[str], name: str) -> list[bytes | None]:
        if not job_ids:
            return []
        return cast(list, self.client.mget([self.keys.blob(job_id, name) for job_id in job_ids]))

    def load_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        records = cast(list, self.client.mget([self.keys.job(job_id) for job_id in job_ids]))
        return [_parse_job(job_id, record) for job_id, record in zip(job_ids, records, strict=True)]

    def write_unless_final(self, writes: Sequence[Write]) -> list[bool]:
        """One round trip; each write is atomic and refused if its job is final or deleted.

        Two workers holding the same redelivered job can both try: exactly one final answer
        lands. The returned flags say which writes landed.
        """
        pipe = self.client.pipeline(transaction=False)
        for write in writes:
            names = write.key_names(self.keys)
            pipe.eval(WRITE_UNLESS_FINAL, len(names), *names, *write.values(self.keys))
        return [bool(landed) for landed in pipe.execute()]

    def save(self, jobs: Iterable[Job], blobs: dict[str, dict[str, bytes]] | None = None) -> None:
        """Unconditional writes (seeding a queue, tools); every key expires with its job."""
        blobs = blobs or {}
        pipe = self.client.pipeline(transaction=True)
        for job in jobs:
            ttl = ttl_left(job)
            pipe.set(self.keys.job(job.job_id), job.model_dump_json(), ex=ttl)
            for name, data in blobs.get(job.job_id, {}).items():
                pipe.set(self.keys.blob(job.job_id, name), data, ex=ttl)
        pipe.execute()

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

    async def create(
        self,
        job: Job,
        upload: bytes,
        links: Mapping[str, str] | None = None,
        model_input: bytes | None = None,
    ) -> None:
        """The upload (and the model input made from it, if any), the record, its entry in the
        pending index and the lookup keys (key -> value) that lead to it, all or nothing.
        Lookup keys expire and go with the job."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.blob(job.job_id, "upload"), upload, ex=self.ttl_s)
        if model_input is not None:
            pipe.set(self.keys.blob(job.job_id, "input"), model_input, ex=self.ttl_s)
        pipe.set(self.keys.job(job.job_id), job.model_dump_json(), ex=self.ttl_s)
        pipe.zadd(self.keys.pending, {job.job_id: time.time()})
        for key, value in (links or {}).items():
            pipe.set(key, value, ex=self.ttl_s)
            pipe.sadd(self.keys.refs(job.job_id), key)
            pipe.expire(self.keys.refs(job.job_id), self.ttl_s)
        await pipe.execute()

    async def add_ref(self, job: Job, key: str) -> None:
        """Make `key` go when the job is deleted."""
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.keys.refs(job.job_id), key)
        pipe.expire(self.keys.refs(job.job_id), ttl_left(job))
        await pipe.execute()

    async def get(self, job_id: str) -> Job | None:
        record = await self.client.get(self.keys.job(job_id))
        return Job.model_validate_json(record) if record else None

    async def blob(self, job_id: str, name: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(self.keys.blob(job_id, name)))

    async def blobs(self, job_id: str, names: Sequence[str]) -> list[bytes | None]:
        keys = [self.keys.blob(job_id, name) for name in names]
        return cast(list, await self.client.mget(keys))

    async def keep_blob(self, job_id: str, name: str, data: bytes) -> None:
        """Store a blob made after the job finished (a picture), expiring with the job; if the
        job was deleted meanwhile, store nothing rather than leave an orphan."""
        await self.client.eval(
            SET_WHILE_JOB_LIVES, 2, self.keys.job(job_id), self.keys.blob(job_id, name), data
        )

    async def delete(self, job_id: str) -> bool:
        """The record, every blob, and the lookup keys (idempotency, dedupe) that point at it."""
        refs = await self.client.smembers(self.keys.refs(job_id))
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*self.keys.all_for_job(job_id), *refs)
        pipe.zrem(self.keys.pending, job_id)
        removed, _ = await pipe.execute()
        return int(removed) > 0

    async def claim(self, key: str, value: str, ttl_s: int) -> bytes | None:
        """Set `key` only if absent, atomically; return the value someone else set first."""
        return cast(bytes | None, await self.client.set(key, value, ex=ttl_s, nx=True, get=True))

    async def lookup(self, key: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(key))

    async def remember(self, key: str, value: str, ttl_s: int) -> None:
        await self.client.set(key, value, ex=ttl_s)

    async def count_in_window(self, key: str, window_s: int) -> int:
        """Increment a counter that lives for one window; the first increment starts the clock."""
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        count, _ = await pipe.execute()
        return int(count)

    async def queue_depth(self, queue_name: str) -> int:
        depth: int = await self.client.llen(queue_name)
        return depth

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
