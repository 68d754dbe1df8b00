"""The FastAPI application, built by a factory: `uvicorn --factory gateway.app:create_app`.

No module-level app, so importing this module reads no environment; the factory reads the
settings once per process (tests pass their own to `create_app(settings)`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.prometheus_metrics import Metrics
from gateway.queue_depth import QueueDepth
from gateway.rate_limit import RateLimiter
from gateway.request_body import CLOSE_CONNECTION, BodyBudget, BodyRefused, limited_receive
from gateway.routes import batches, compat, dicom_results, dicomweb, jobs, ops, web
from gateway.security import Guard
from gateway.serving import ServingPreprocessing
from gateway.wakeups import FinishedJobs
from shared.blobs import async_objects
from shared.config import Settings, get_settings
from shared.decode_budget import MEGABYTE, AsyncDecodeBudget
from shared.errors import (
    AppError,
    InvalidRequest,
    StoreFull,
    StoreUnavailable,
    UploadTooLarge,
    framework_refusal,
)
from shared.queue import make_celery
from shared.store import AsyncStore, MemoryWatermark

log = logging.getLogger(__name__)
# Multipart framing around the file: a body may be this much larger than the file limit; a
# larger one is refused unread when declared, and when the count reaches it while streaming.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MANY_FILE_PATHS = ("/v1/batches", "/dicomweb/studies")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = store = open_store(settings)
        app.state.celery = make_celery(settings, "pneumo-gateway")
        app.state.queue_depth = QueueDepth(settings, app.state.celery)
        # Long polls wake on a job's final write; it connects in the background, so the
        # gateway starts even while Redis is away.
        app.state.finished_jobs = finished = FinishedJobs(store)
        finished.start()
        yield
        await finished.stop()
        app.state.queue_depth.close()
        await store.aclose()

    app = FastAPI(
        title="Pneumonia X-ray triage",
        version="0.1.0",
        description="Submit a chest radiograph, poll for NORMAL/PNEUMONIA with a calibrated "
        "probability and a Grad-CAM explanation. Triage support, not a diagnosis.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.serving_preprocessing = ServingPreprocessing(settings.heartbeat_s)
    app.state.decode_budget = AsyncDecodeBudget(settings.decode_memory_mb * MEGABYTE)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
        )
    install_error_handlers(app)
    app.add_middleware(BodyLimitAndMetrics)
    # Outside the body limit: the caller is known, and one without a key answered, before
    # anything reads a byte of the body (gateway.security).
    app.add_middleware(Guard, settings=settings, metrics=app.state.metrics)
    if settings.trusted_proxies:  # outermost: the guard sees the client the proxy names
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    # web first: its /v1/jobs/{id}/input.png must match before jobs' /v1/jobs/{id}/{name}.png.
    for module in (web, jobs, dicom_results, batches, compat, ops, dicomweb):
        app.include_router(module.router)
    return app


def open_store(settings: Settings) -> AsyncStore:
    watermark = MemoryWatermark(
        settings.store_memory_watermark, settings.store_memory_sample_ms / 1000.0
    )
    return AsyncStore.from_url(
        settings.redis_url, settings.key_prefix, settings.job_ttl_s,
        pool_size=settings.redis_pool_size, pool_wait_s=settings.redis_pool_wait_s,
        watermark=watermark, objects=async_objects(settings),
    )  # fmt: skip


class BodyLimitAndMetrics:
    """Refuses a body declared larger than its route allows before a byte of it is read, stops
    reading one that streams past the limit or arrives too slowly (`gateway.request_body`),
    and counts every request by route and status.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`)
    runs each request through an extra task and memory stream, which measurably costs CPU on
    the two requests every job makes.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        settings: Settings = request.app.state.settings
        metrics: Metrics = request.app.state.metrics
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises past its handlers

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = request.headers.get("content-length")
            limit = body_limit(request, settings)
            if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
                refusal = UploadTooLarge(f"The request exceeds {limit} bytes.")
                await refusal_response(refusal)(scope, receive, send_and_note_status)
            else:
                budget = body_budget(limit, settings)
                await self.app(scope, limited_receive(receive, budget), send_and_note_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.requests.labels(request.method, path, str(status)).inc()
            metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)


def body_limit(request: Request, settings: Settings) -> int:
    """A batch (or a STOW-RS request) carries many files; every other request at most one."""
    batch = request.method == "POST" and request.url.path in MANY_FILE_PATHS
    return settings.max_batch_bytes if batch else settings.max_upload_bytes


def body_budget(limit: int, settings: Settings) -> BodyBudget:
    return BodyBudget(
        limit + MULTIPART_OVERHEAD_BYTES, settings.body_timeout_s, settings.body_min_rate
    )


def refusal_response(error: AppError) -> JSONResponse:
    """An answer given with the body unread: the connection closes rather than drain it."""
    headers = dict(CLOSE_CONNECTION)
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return error_response(error, headers)


def error_response(error: AppError, headers: dict[str, str] | None = None) -> JSONResponse:
    if not headers and error.retry_after_s is not None:
        headers = {"Retry-After": str(error.retry_after_s)}
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def app_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, AppError)
        if error.status in (413, 415, 422):
            request.app.state.metrics.jobs_rejected.labels(error.code).inc()
        return error_response(error)

    async def body_refused(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, BodyRefused)
        await app_error(request, error.failure)  # counted like any other rejection
        return refusal_response(error.failure)

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        return error_response(InvalidRequest(problems))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return error_response(framework_refusal(error.status_code, str(error.detail)))

    async def redis_error(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, OutOfMemoryError):  # at maxmemory: an overload, not an outage
            log.warning("Redis is full: %s", error)
            return error_response(StoreFull("The job store is full; try again shortly."))
        log.warning("Redis unavailable: %s", error)
        return error_response(StoreUnavailable("The job store is unavailable; try again shortly."))

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(BodyRefused, body_refused)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RedisError, redis_error)
