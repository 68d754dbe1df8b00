"""Dependency aliases, so route signatures read like prose."""

from __future__ import annotations

import hmac
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request

from gateway.metrics import Metrics
from shared.config import Settings
from shared.errors import Unauthorized
from shared.store import AsyncStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> AsyncStore:
    store: AsyncStore = request.app.state.store
    return store


def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AsyncStore, Depends(get_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Open when no keys are configured; otherwise `X-API-Key` or `Authorization: Bearer`."""
    if not settings.api_keys:
        return
    presented = x_api_key or _bearer_token(authorization)
    # Compare against every key, always, so timing reveals neither a match nor which key.
    matches = [hmac.compare_digest(presented or "", key) for key in settings.api_keys]
    if not presented or not any(matches):
        raise Unauthorized("A valid API key is required (X-API-Key or Authorization: Bearer).")


def _bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


AuthDep = Depends(require_api_key)
