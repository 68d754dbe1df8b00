"""Answering a repeated submission with the job it already made, instead of making another.

* `Idempotency-Key` (IETF draft-ietf-httpapi-idempotency-key-header): the first request with a
  key claims it. Repeating the key with the same file and method gives back the same job (202
  and its current state, like the original answer); with different content it is refused with
  422 `idempotency_key_reused`; while the first request is still being stored, 409
  `idempotency_key_in_flight`.
* A batch (`POST /v1/batches`) is repeated the same way: the same key, files (in order) and
  method give back the same batch; its key expires with the batch.
* Result dedupe (`PNEUMO_DEDUPE_RESULTS`, off by default): the same image and method again,
  while the model that answered it is still serving, gets the earlier succeeded job back.

Both lookups are scoped to the client (API key digest, else address): no client can reach
another's job through them. Their keys expire with the job and go when it is deleted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gateway.serving import live_workers
from shared.config import Settings
from shared.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from shared.schemas import BatchCreated, Job, JobStatus
from shared.store import AsyncStore, Lookup, ttl_left

# A claim whose job was never stored (the store failed in between) frees itself after this.
IN_FLIGHT_TTL_S = 60


@dataclass(frozen=True)
class ReuseKeys:
    """The lookups under which one submission can be found again, and its fingerprint."""

    fingerprint: str
    idempotency: Lookup | None = None
    dedupe: Lookup | None = None

    def links(self, job_id: str) -> dict[Lookup, str]:
        """Lookup -> value to store with a new job."""
        links = {self.dedupe: job_id} if self.dedupe else {}
        if self.idempotency:
            links[self.idempotency] = self.claim_value(job_id)
        return links

    def claim_value(self, job_id: str) -> str:
        return json.dumps({"job_id": job_id, "fingerprint": self.fingerprint})

    def batch_links(self, batch_id: str) -> dict[Lookup, str]:
        """Lookup -> value to store with a new batch."""
        return {self.idempotency: self.batch_claim_value(batch_id)} if self.idempotency else {}

    def batch_claim_value(self, batch_id: str) -> str:
        return json.dumps({"batch_id": batch_id, "fingerprint": self.fingerprint})


def reuse_keys(
    settings: Settings, scope: str, method: str, upload: bytes, key: str | None
) -> ReuseKeys | None:
    """None when the submission cannot be a repeat (no key, dedupe off): hashing the upload
    costs the event loop a few hundred microseconds per film, for nothing then."""
    if key is None and not settings.dedupe_results:
        return None
    content = hashlib.sha256(f"{method}\0".encode())
    content.update(upload)
    fingerprint = content.hexdigest()
    return ReuseKeys(
        fingerprint=fingerprint,
        idempotency=Lookup.idempotency_key(_digest(scope, key)) if key else None,
        dedupe=Lookup.content(_digest(scope, fingerprint)) if settings.dedupe_results else None,
    )


def batch_reuse_keys(scope: str, method: str, uploads: list[bytes], key: str) -> ReuseKeys:
    """A batch's fingerprint covers its kind, method and every file in order, so a key first
    used for a single job (or another batch) is refused as reused, never confused."""
    content = hashlib.sha256(f"batch\0{method}\0".encode())
    for upload in uploads:
        content.update(hashlib.sha256(upload).digest())
    return ReuseKeys(content.hexdigest(), Lookup.idempotency_key(_digest(scope, key)))


def _digest(scope: str, text: str) -> str:
    return hashlib.sha256(f"{scope}\0{text}".encode()).hexdigest()


async def find_earlier(store: AsyncStore, settings: Settings, keys: ReuseKeys) -> Job | None:
    """The job an earlier identical submission made, if it should be the answer to this one."""
    if keys.idempotency:
        claimed = await store.find(keys.idempotency)
        if claimed:
            return await replay(store, claimed, keys.fingerprint)
    twin = await find_twin(store, settings, keys.dedupe) if keys.dedupe else None
    if twin and keys.idempotency:
        earlier = await claim(store, keys, twin, ttl_left(twin))
        if earlier:
            return earlier
        await store.add_ref(twin, keys.idempotency)  # deleting the twin frees the key too
    return twin


async def claim(store: AsyncStore, keys: ReuseKeys, job: Job, ttl_s: int) -> Job | None:
    """Reserve the idempotency key for `job`; if another request got there first, its job."""
    if not keys.idempotency:
        return None
    earlier = await store.claim(keys.idempotency, keys.claim_value(job.job_id), ttl_s)
    return await replay(store, earlier, keys.fingerprint) if earlier else None


async def replay(store: AsyncStore, earlier: bytes, fingerprint: str) -> Job:
    record = _same_request(earlier, fingerprint)
    job = await store.get(record["job_id"])
    if job is None:
        raise _in_flight()
    return job


async def find_earlier_batch(store: AsyncStore, keys: ReuseKeys) -> BatchCreated | None:
    """The batch an earlier request with this key made (`batch_reuse_keys`), if any."""
    assert keys.idempotency is not None
    claimed = await store.find(keys.idempotency)
    return await replay_batch(store, claimed, keys.fingerprint) if claimed else None


async def claim_batch(store: AsyncStore, keys: ReuseKeys, batch_id: str) -> BatchCreated | None:
    """Reserve the key for `batch_id` while its jobs are stored (`AsyncStore.save_batch` then
    keeps it with the batch); if another request got there first, its batch."""
    assert keys.idempotency is not None
    value = keys.batch_claim_value(batch_id)
    earlier = await store.claim(keys.idempotency, value, IN_FLIGHT_TTL_S)
    return await replay_batch(store, earlier, keys.fingerprint) if earlier else None


async def replay_batch(store: AsyncStore, earlier: bytes, fingerprint: str) -> BatchCreated:
    record = _same_request(earlier, fingerprint)
    stored = await store.load_batch(record["batch_id"])
    if stored is None:
        raise _in_flight()
    return BatchCreated(batch_id=record["batch_id"], job_ids=stored[0])


def _same_request(earlier: bytes, fingerprint: str) -> dict[str, str]:
    record: dict[str, str] = json.loads(earlier)
    if record["fingerprint"] != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a different request; use a new key."
        )
    return record


def _in_flight() -> IdempotencyKeyInFlight:
    return IdempotencyKeyInFlight(
        "A request with this Idempotency-Key is still being stored; retry shortly."
    )


async def find_twin(store: AsyncStore, settings: Settings, dedupe: Lookup) -> Job | None:
    """A succeeded job for the same content whose model is still the one serving."""
    job_id = await store.find(dedupe)
    job = await store.get(job_id.decode()) if job_id else None
    if job is None or job.status is not JobStatus.succeeded or job.result is None:
        return None
    workers = await live_workers(store, settings.heartbeat_s)
    serving = {beat["model"]["sha256"] for beat in workers.values()}
    return job if job.result.model.sha256 in serving else None
