"""The S3-protocol blob backend, on obstore (Rust's object_store): measured fastest on this
workload, small objects many at a time, at a fraction of the CPU of aiobotocore or boto3
(bench/s3_clients.py, bench/RESULTS.md).

`AsyncS3Blobs` is the gateway's (on its event loop); `S3Blobs` the worker's: its Celery
threads call it synchronously and it runs each round of requests concurrently on a loop of its
own. Every round is concurrent: a batch's objects are written in one round, not one request
per job. A missing object reads as None; any other failure (the store down, refusing, timing
out) is `BlobStoreUnavailable`, which the gateway answers 503 with Retry-After and the worker
treats like an unreachable Redis (the batch is handed back, not failed).

Credentials come the SDKs' standard way: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
(and `AWS_SESSION_TOKEN`), or web identity / instance metadata where those are set up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from shared.errors import BlobStoreUnavailable

if TYPE_CHECKING:
    from shared.config import Settings

T = TypeVar("T")
# A store that is down should be answered quickly (the gateway's 503, the worker's hand-back),
# not after object_store's default of ten retries over three minutes.
MAX_RETRIES = 2
CONNECT_TIMEOUT_S = 2.0
UNAVAILABLE_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class S3Location:
    """Where the objects go: `PNEUMO_S3_*`."""

    endpoint_url: str  # empty: AWS's own endpoint for the region
    bucket: str
    region: str
    prefix: str
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Location:
        return cls(settings.s3_endpoint_url, settings.s3_bucket, settings.s3_region,
                   settings.s3_prefix, settings.s3_timeout_s)  # fmt: skip

    def key(self, job_id: str, name: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{job_id}/{name}" if prefix else f"{job_id}/{name}"


def open_s3(location: S3Location) -> S3Store:
    """An obstore client for the location; credentials from the environment."""
    options: dict[str, Any] = {
        "timeout": f"{location.timeout_s}s",
        "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
        "allow_http": location.endpoint_url.startswith("http://"),
    }
    retry = {"max_retries": MAX_RETRIES, "retry_timeout": timedelta(seconds=location.timeout_s)}
    config: dict[str, Any] = {"region": location.region}
    if location.endpoint_url:
        config["endpoint"] = location.endpoint_url
    return S3Store(location.bucket, client_options=options, retry_config=retry, **config)  # type: ignore[arg-type]


def _unavailable(error: Exception) -> BlobStoreUnavailable:
    return BlobStoreUnavailable(
        f"The object store is unavailable ({type(error).__name__}); try again shortly.",
        retry_after_s=UNAVAILABLE_RETRY_AFTER_S,
    )


@dataclass(frozen=True)
class Presigning:
    """Presigned GET URLs for clients: signed for the endpoint they reach, valid this long."""

    public_endpoint_url: str
    expiry_s: int


class AsyncS3Blobs:
    """A job's blobs as objects `{prefix}/{job id}/{name}`, on the caller's event loop."""

    def __init__(self, location: S3Location, store: S3Store | None = None,
                 presigning: Presigning | None = None):  # fmt: skip
        self.location = location
        self.store = store or open_s3(location)
        self.presigning = presigning
        # Signing needs no request, only the endpoint the URL names: a client of its own.
        self._signer = None
        if presigning is not None:
            public = replace(location, endpoint_url=presigning.public_endpoint_url)
            self._signer = open_s3(public)

    async def exists(self, job_id: str, name: str) -> bool:
        try:
            await obstore.head_async(self.store, self.location.key(job_id, name))
        except (FileNotFoundError, NotFoundError):
            return False
        except (BaseError, OSError, TimeoutError) as error:
            raise _unavailable(error) from error
        return True

    async def signed_url(self, job_id: str, name: str) -> str | None:
        """A presigned GET URL of the object for clients; None without presigning."""
        if self._signer is None or self.presigning is None:
            return None
        expiry = timedelta(seconds=self.presigning.expiry_s)
        key = self.location.key(job_id, name)
        return await obstore.sign_async(self._signer, "GET", key, expiry)

    async def put_many(self, blobs_by_job: Mapping[str, Mapping[str, bytes]]) -> None:
        """Every blob of every job given, in one concurrent round."""
        writes = [
            obstore.put_async(self.store, self.location.key(job_id, name), data)
            for job_id, blobs in blobs_by_job.items()
            for name, data in blobs.items()
        ]
        await self._all(writes)

    async def get(self, job_id: str, names: Sequence[str]) -> list[bytes | None]:
        return await self._all([self._get(self.location.key(job_id, name)) for name in names])

    async def get_many(self, job_ids: Sequence[str], name: str) -> list[bytes | None]:
        """The blob `name` of each job, in one concurrent round."""
        return await self._all([self._get(self.location.key(each, name)) for each in job_ids])

    async def delete(self, job_ids: Sequence[str], names: Sequence[str]) -> None:
        """The named blobs of each job, gone or not (S3 deletes missing keys without error);
        DeleteObjects requests of up to 1,000 keys."""
        keys = [self.location.key(job_id, name) for job_id in job_ids for name in names]
        if keys:
            await self._all([obstore.delete_async(self.store, keys)])

    async def reachable(self) -> bool:
        """One GET of a key that never exists: answered (404) means up, authorised, and the
        bucket there; anything else is down."""
        try:
            await self._all([self._get(self.location.key("_readyz", "probe"))])
        except BlobStoreUnavailable:
            return False
        return True

    async def _get(self, key: str) -> bytes | None:
        try:
            found = await obstore.get_async(self.store, key)
            return bytes(await found.bytes_async())
        except (FileNotFoundError, NotFoundError):
            return None

    @staticmethod
    async def _all(calls: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
        try:
            return list(await asyncio.gather(*calls))
        except (BaseError, OSError, TimeoutError) as error:
            raise _unavailable(error) from error


class S3Blobs:
    """`AsyncS3Blobs` for threads: each call runs one concurrent round on this object's own
    event loop (a daemon thread) and waits for it. Shared by every batch a worker runs."""

    def __init__(self, location: S3Location, store: S3Store | None = None):
        self.blobs = AsyncS3Blobs(location, store)
        self.location = location
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="s3-blobs", daemon=True).start()

    def put_many(self, blobs_by_job: Mapping[str, Mapping[str, bytes]]) -> None:
        self._run(self.blobs.put_many(blobs_by_job))

    def get(self, job_id: str, names: Sequence[str]) -> list[bytes | None]:
        return self._run(self.blobs.get(job_id, names))

    def get_many(self, job_ids: Sequence[str], name: str) -> list[bytes | None]:
        return self._run(self.blobs.get_many(job_ids, name))

    def delete(self, job_ids: Sequence[str], names: Sequence[str]) -> None:
        self._run(self.blobs.delete(job_ids, names))

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()
