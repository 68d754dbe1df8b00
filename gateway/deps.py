"""Dependency aliases, so route signatures read like prose.

Every dependency is `async def`, though none of them awaits anything: FastAPI runs a plain
`def` dependency in its thread pool, and those hops (about eleven per submit-and-poll) cost
the event loop more CPU than the dependencies themselves."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request

from gateway.prometheus_metrics import Metrics
from gateway.rate_limit import RateLimiter
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
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FinishedJobsDep = Annotated[FinishedJobs, Depends(get_finished_jobs)]


@dataclass(frozen=True)
class Client:
    """Who is asking, for rate limits and idempotency keys: a digest of the API key when keys
    are configured (never the key itself), else the peer address."""

    scope: str


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Client:
    """Open when no keys are configured; otherwise `X-API-Key` or `Authorization: Bearer`."""
    if not settings.api_keys:
        return Client(f"address:{request.client.host if request.client else 'unknown'}")
    presented = x_api_key or _bearer_token(authorization)
    if not presented or not _matches_a_key(presented, settings.api_keys):
        raise Unauthorized("A valid API key is required (X-API-Key or Authorization: Bearer).")
    return Client(f"key:{_digest(presented)[:32]}")


def _matches_a_key(presented: str, keys: tuple[str, ...]) -> bool:
    # Digests first: equal lengths, so the comparison time reveals neither the key's length
    # nor its prefix, and any header text compares (compare_digest refuses non-ASCII str).
    # Every key is compared, always, so timing does not tell which key matched either.
    presented_digest = _digest(presented)
    matches = [hmac.compare_digest(presented_digest, _digest(key)) for key in keys]
    return any(matches)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


AuthDep = Depends(require_api_key)
ClientDep = Annotated[Client, Depends(require_api_key)]
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
    client: ClientDep,
    preprocessing: PreprocessingDep,
) -> Intake:
    rate_limiter: RateLimiter = request.app.state.rate_limiter
    return Intake(store, celery, settings, client.scope, preprocessing, rate_limiter)


# Everything an upload route needs to accept files (gateway.submission.Intake).
IntakeDep = Annotated[Intake, Depends(get_intake)]
