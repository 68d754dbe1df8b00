"""Where a job's blobs live: in Redis beside its record (`redis`, the default), or as objects in
an S3-protocol store (`s3`: SeaweedFS in compose and tests, any S3 in production), chosen by
`PNEUMO_BLOB_STORE`.

Callers never see this choice: they name jobs and blobs through the job store
(`shared.store.AsyncStore.create / blob / blobs / keep_blob / delete`,
`shared.store.SyncStore.load_blobs / write_unless_final / save`), which keeps records,
lookups and the queue's bookkeeping in Redis and hands blob bytes to the backend here. With
`redis` the store writes blobs in the same atomic step as the record (`shared.store.scripts`);
with `s3` it writes the objects first, in one concurrent round per request or per batch, then
the record, so a record never points at objects that were not stored.

Object keys: `{PNEUMO_S3_PREFIX}/{job id}/{blob name}`, names from `shared.store.BLOB_NAMES`.
They expire with their job: the store indexes each job's expiry in Redis and the workers'
sweeper deletes the objects of expired jobs (`SyncStore.reap_expired_blobs`); a bucket
lifecycle rule (docs/operations.md) is the backstop for anything a crash left behind.
"""

from __future__ import annotations

from shared.blobs.s3 import AsyncS3Blobs, Presigning, S3Blobs, S3Location, open_s3
from shared.config import Settings

__all__ = [
    "AsyncS3Blobs", "Presigning", "S3Blobs", "S3Location", "async_objects", "open_s3",
    "thread_objects",
]  # fmt: skip


def async_objects(settings: Settings) -> AsyncS3Blobs | None:
    """The gateway's object store; None where blobs stay in Redis."""
    if settings.blob_store != "s3":
        return None
    presigning = None
    if settings.s3_presign:
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        presigning = Presigning(public, settings.s3_presign_expiry_s)
    return AsyncS3Blobs(S3Location.from_settings(settings), presigning=presigning)


def thread_objects(settings: Settings) -> S3Blobs | None:
    """A worker's object store (called from its threads); None where blobs stay in Redis."""
    if settings.blob_store != "s3":
        return None
    return S3Blobs(S3Location.from_settings(settings))
