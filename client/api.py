"""Python client for the triage API: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

    with Client("http://gateway:8000", api_key="...") as client:
        job = client.predict("chest.dcm")
        print(job.result.label, job.result.probability)
        client.download_overlay(job, "chest-overlay.png")

Both classes share `Call`s, which say what each request sends and how its answer is read;
they differ only in how they wait. A busy gateway (429, 503) is asked again after its
Retry-After, or an exponential backoff without one, a bounded number of times. That is safe
for submissions too: the gateway stores nothing for a request it turns away. Both take their
`sleep` and `clock` as arguments, so a test can see the waits asked for without spending them.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from shared.schemas import Batch, BatchCreated, Job, JobStatus, blob_url, job_url

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)
JobRef = Job | str
BUSY_STATUSES = (429, 503)
# A long-poll slice: the gateway caps ?wait= itself; this keeps each request well inside the
# HTTP timeout.
POLL_SLICE_S = 10.0


class ClientError(Exception):
    """The gateway said no: `status` and `code` are its answer, `message` is for people."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "client_error"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class WaitTimeout(ClientError):
    def __init__(self, job_id: str, timeout_s: float):
        super().__init__(
            f"Job {job_id} was not finished after {timeout_s:g} s; poll it later.",
            code="wait_timeout",
        )
        self.job_id = job_id


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay_before_retry(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before asking again, or None when the answer is final."""
        if response.status_code not in BUSY_STATUSES or attempt + 1 >= self.attempts:
            return None
        advised = retry_after_seconds(response.headers.get("Retry-After"))
        backoff = self.base_delay_s * 2**attempt
        return min(self.max_delay_s, backoff if advised is None else advised)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class Call(Generic[T]):
    """One API request and the reading of its answer; no I/O here."""

    method: str
    url: str
    parse: Callable[[httpx.Response], T]
    options: dict[str, Any] = field(default_factory=dict)


def raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    raise ClientError(message, status=response.status_code, code=code)


def read_job(response: httpx.Response) -> Job:
    raise_for_error(response)
    return Job.model_validate_json(response.content)


def read_bytes(response: httpx.Response) -> bytes:
    raise_for_error(response)
    return response.content


def job_id_of(job: JobRef) -> str:
    return job.job_id if isinstance(job, Job) else job


def upload_part(path: str | Path) -> tuple[str, bytes, str]:
    """Read once, so a retried request sends the same bytes; the server sniffs the type."""
    source = Path(path)
    return (source.name, source.read_bytes(), "application/octet-stream")


class Calls:
    """Every request the clients make, shared by the blocking and the asyncio one."""

    @staticmethod
    def submit(path: str | Path, method: str) -> Call[Job]:
        files = {"file": upload_part(path)}
        return Call("POST", "/v1/jobs", read_job, {"files": files, "data": {"method": method}})

    @staticmethod
    def status(job: JobRef, wait_s: float = 0) -> Call[Job]:
        params = {"wait": wait_s} if wait_s else {}
        return Call("GET", job_url(job_id_of(job)), read_job, {"params": params})

    @staticmethod
    def picture(job: JobRef, name: str) -> Call[bytes]:
        return Call("GET", blob_url(job_id_of(job), name), read_bytes)

    @staticmethod
    def delete(job: JobRef) -> Call[None]:
        return Call("DELETE", job_url(job_id_of(job)), raise_for_error)

    @staticmethod
    def submit_batch(paths: list[str | Path], method: str) -> Call[BatchCreated]:
        files = [("files", upload_part(path)) for path in paths]
        return Call(
            "POST",
            "/v1/batches",
            _reader(BatchCreated),
            {"files": files, "data": {"method": method}},
        )

    @staticmethod
    def batch(batch_id: str) -> Call[Batch]:
        return Call("GET", f"/v1/batches/{batch_id}", _reader(Batch))

    @staticmethod
    def models() -> Call[list[dict[str, Any]]]:
        return Call("GET", "/v1/models", lambda response: _json(response)["models"])


def _json(response: httpx.Response) -> Any:
    raise_for_error(response)
    return response.json()


def _reader(model: type[ModelT]) -> Callable[[httpx.Response], ModelT]:
    return lambda response: model.model_validate_json(read_bytes(response))


def succeeded_or_raise(job: Job) -> Job:
    if job.status is JobStatus.failed and job.error is not None:
        raise ClientError(job.error.message, code=job.error.code)
    return job


def http_options(base_url: str, api_key: str | None, timeout_s: float) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    # Long polls hold a request open for up to POLL_SLICE_S; the read timeout must outlast it.
    timeout = httpx.Timeout(max(timeout_s, POLL_SLICE_S + 5), connect=min(timeout_s, 10.0))
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


class Client:
    """Blocking client; use it as a context manager so its connections are closed."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, **httpx_options: Any):  # fmt: skip
        self.retry = retry or RetryPolicy()
        self.sleep, self.clock = sleep, clock
        self.http = httpx.Client(**http_options(base_url, api_key, timeout_s), **httpx_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response = self.http.request(call.method, call.url, **call.options)
            delay = self.retry.delay_before_retry(response, attempt)
            if delay is None:
                return call.parse(response)
            self.sleep(delay)
            attempt += 1

    def submit(self, path: str | Path, method: str = "gradcam") -> Job:
        return self.send(Calls.submit(path, method))

    def status(self, job: JobRef, wait_s: float = 0) -> Job:
        return self.send(Calls.status(job, wait_s))

    def wait(self, job: JobRef, timeout: float = 60.0) -> Job:
        """The job once it succeeded or failed; WaitTimeout if that takes longer than timeout."""
        deadline = self.clock() + timeout
        current = job if isinstance(job, Job) else self.status(job)
        while not current.status.is_final:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WaitTimeout(current.job_id, timeout)
            current = self.status(current, wait_s=min(POLL_SLICE_S, max(remaining, 0.1)))
        return current

    def predict(self, path: str | Path, method: str = "gradcam", timeout: float = 60.0) -> Job:
        """Submit and wait; a failed job raises ClientError with the worker's code."""
        return succeeded_or_raise(self.wait(self.submit(path, method), timeout))

    def download_overlay(self, job: JobRef, path: str | Path) -> Path:
        return self.download_picture(job, "overlay", path)

    def download_picture(self, job: JobRef, name: str, path: str | Path) -> Path:
        target = Path(path)
        picture = self.send(Calls.picture(job, name))
        target.write_bytes(picture)
        return target

    def delete(self, job: JobRef) -> None:
        self.send(Calls.delete(job))

    def submit_batch(self, paths: list[str | Path], method: str = "gradcam") -> BatchCreated:
        return self.send(Calls.submit_batch(paths, method))

    def batch(self, batch_id: str) -> Batch:
        return self.send(Calls.batch(batch_id))

    def models(self) -> list[dict[str, Any]]:
        return self.send(Calls.models())


class AsyncClient:
    """The same API for asyncio code: every method is a coroutine."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, **httpx_options: Any):  # fmt: skip
        self.retry = retry or RetryPolicy()
        self.sleep, self.clock = sleep, clock
        self.http = httpx.AsyncClient(**http_options(base_url, api_key, timeout_s), **httpx_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response = await self.http.request(call.method, call.url, **call.options)
            delay = self.retry.delay_before_retry(response, attempt)
            if delay is None:
                return call.parse(response)
            await self.sleep(delay)
            attempt += 1

    async def submit(self, path: str | Path, method: str = "gradcam") -> Job:
        return await self.send(Calls.submit(path, method))

    async def status(self, job: JobRef, wait_s: float = 0) -> Job:
        return await self.send(Calls.status(job, wait_s))

    async def wait(self, job: JobRef, timeout: float = 60.0) -> Job:
        deadline = self.clock() + timeout
        current = job if isinstance(job, Job) else await self.status(job)
        while not current.status.is_final:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WaitTimeout(current.job_id, timeout)
            current = await self.status(current, wait_s=min(POLL_SLICE_S, max(remaining, 0.1)))
        return current

    async def predict(
        self, path: str | Path, method: str = "gradcam", timeout: float = 60.0
    ) -> Job:
        return succeeded_or_raise(await self.wait(await self.submit(path, method), timeout))

    async def download_overlay(self, job: JobRef, path: str | Path) -> Path:
        return await self.download_picture(job, "overlay", path)

    async def download_picture(self, job: JobRef, name: str, path: str | Path) -> Path:
        target = Path(path)
        picture = await self.send(Calls.picture(job, name))
        target.write_bytes(picture)
        return target

    async def delete(self, job: JobRef) -> None:
        await self.send(Calls.delete(job))

    async def submit_batch(self, paths: list[str | Path], method: str = "gradcam") -> BatchCreated:
        return await self.send(Calls.submit_batch(paths, method))

    async def batch(self, batch_id: str) -> Batch:
        return await self.send(Calls.batch(batch_id))

    async def models(self) -> list[dict[str, Any]]:
        return await self.send(Calls.models())
