"""Dependency aliases, so route signatures read like prose.

Every dependency is `async def`, though none of them awaits anything: FastAPI runs a plain
`def` dependency in its thread pool, and those hops (about eleven per submit-and-poll) cost
the event loop more CPU than the dependencies themselves."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request

from gateway.prometheus_metrics import Metrics
from gateway.queue_depth import QueueDepth
from gateway.rate_limit import RateLimiter
from gateway.security import UNAUTHORIZED_MESSAGE, Caller
from gateway.serving import ServingPreprocessing
from gateway.submission import Intake
from gateway.wakeups import FinishedJobs
from shared.config import Settings
from shared.errors import InvalidIdempotencyKey, Unauthorized
from shared.imaging import PreprocessParams
from shared.store import AsyncStore


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> AsyncStore:
    store: AsyncStore = request.app.state.store
    return store


async def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


async def get_queue_depth(request: Request) -> QueueDepth:
    queue_depth: QueueDepth = request.app.state.queue_depth
    return queue_depth


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_finished_jobs(request: Request) -> FinishedJobs:
    finished: FinishedJobs = request.app.state.finished_jobs
    return finished


async def get_serving_preprocessing(request: Request) -> PreprocessParams | None:
    serving: ServingPreprocessing = request.app.state.serving_preprocessing
    return await serving.current(await get_store(request))


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AsyncStore, Depends(get_store)]
PreprocessingDep = Annotated[PreprocessParams | None, Depends(get_serving_preprocessing)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
QueueDepthDep = Annotated[QueueDepth, Depends(get_queue_depth)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FinishedJobsDep = Annotated[FinishedJobs, Depends(get_finished_jobs)]


async def require_api_key(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    """Open when no keys are configured; otherwise `X-API-Key` or `Authorization: Bearer`.

    `gateway.security.Guard` checked the key before the body was read and left the caller
    here; the headers are declared so the API's documentation shows them."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    return caller


AuthDep = Depends(require_api_key)
CallerDep = Annotated[Caller, Depends(require_api_key)]
# RFC 9110 fields are visible ASCII; the draft's structured-field form is a quoted string.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Repeat a POST safely: the same key and file give back the same job "
            "(IETF draft-ietf-httpapi-idempotency-key-header). 1-255 printable ASCII "
            "characters; scoped to your API key.",
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise InvalidIdempotencyKey(
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
        )
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


async def get_intake(
    request: Request,
    store: StoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    caller: CallerDep,
    preprocessing: PreprocessingDep,
) -> Intake:
    rate_limiter: RateLimiter = request.app.state.rate_limiter
    return Intake(
        store, celery, settings, caller.scope, preprocessing, rate_limiter, owner=caller.owner,
        decode_budget=request.app.state.decode_budget, queue_depth=request.app.state.queue_depth,
    )  # fmt: skip


# Everything an upload route needs to accept files (gateway.submission.Intake).
IntakeDep = Annotated[Intake, Depends(get_intake)]
