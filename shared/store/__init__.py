"""The store: job records, blobs (uploads, model inputs, maps, PNGs) and the service's
bookkeeping in Redis, every key with a TTL; or the blobs in an S3-protocol object store
(`shared.blobs`, `PNEUMO_BLOB_STORE=s3`) and the rest in Redis. The only door to them: callers
name jobs, blobs and lookups, never keys or backends. (The broker's own keys are Celery's and
kombu's.)

Key layout, all under the configured prefix:
    {p}:job:{id}              JSON of `Job`
    {p}:blob:{id}:{name}      bytes: upload, input (model input), cam (map), heatmap, overlay
    {p}:finals:{id}           how many times a final state was written: 1, or a job was duplicated
    {p}:refs:{id}             set of the lookup keys below that point at this job, erased with it
    {p}:idem:{digest}         a client's Idempotency-Key -> job id + request fingerprint
    {p}:dedupe:{digest}       a client's image + method -> job id (when result dedupe is on)
    {p}:batch:{id}            JSON list of a batch's job ids (`shared.batches`)
    {p}:rate:{client}:{n}     submissions by one client in rate-limit window n
    {p}:pending               sorted set: unfinished job id -> when it was last queued
    {p}:sweep-turn            which worker sweeps `pending` next (worker.serving.recovery)
    {p}:blob-expiry           sorted set, with blobs in object storage (`shared.blobs`): job id ->
                              when its objects expire, for the workers' sweeper to delete them
    {p}:workers               hash: worker name -> heartbeat JSON (model card, time)
    {p}:results               hash: assessment -> results finished with it, for ever (no TTL:
                              a counter for /metrics, counted once per job by its final write)
    {p}:deliveries            hash: DICOM delivery outcome -> count, for ever (/metrics)
    {p}:deliveries-pending    sorted set: pending DICOM delivery's job id -> last looked at
                              (`gateway.dicom_delivery`: its sweep finds lost messages)
    {p}:finished              pub/sub channel, not a key: the id of each job whose final state
                              landed, for the gateways' long polls (gateway.wakeups)

Modules: `keys` names them, `records` reads and writes job records (one parser for both
stores: a record this version cannot read is `CorruptRecord` on either side), `scripts` holds
the atomic writes, `sync_store` is the worker's view, `async_store` the gateway's,
`announcements` the finished channel, and `memory` the gateway's watermark against a full Redis.
"""

from shared.store.announcements import Announcement, FinishedAnnouncements
from shared.store.async_store import AsyncStore
from shared.store.keys import BLOB_NAMES, Keys, Lookup
from shared.store.memory import MemorySample, MemoryWatermark
from shared.store.records import Loaded, Write, new_job, parse_job, ttl_left
from shared.store.sync_store import SyncStore

__all__ = [
    "BLOB_NAMES", "Announcement", "AsyncStore", "FinishedAnnouncements", "Keys", "Loaded",
    "Lookup", "MemorySample", "MemoryWatermark", "SyncStore", "Write", "new_job", "parse_job",
    "ttl_left",
]  # fmt: skip
