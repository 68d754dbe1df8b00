"""Operations: liveness, readiness, Prometheus metrics, model cards."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import AuthDep, MetricsDep, QueueDepthDep, SettingsDep, StoreDep
from gateway.serving import live_workers
from shared.schemas import ErrorBody

router = APIRouter(tags=["operations"])
# POSIX absolute, home-relative, or Windows drive paths.
ABSOLUTE_PATH = re.compile(r"^(/|~/|[A-Za-z]:[\\/])\S")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Redis or the object store down, or no worker with a model"}},
)
async def readyz(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    workers = await live_workers(store, settings.heartbeat_s)
    objects = await store.blobs_reachable()
    ready = bool(workers) and objects
    body = {"status": "ready" if ready else "not_ready", "redis": "ok", "workers": len(workers)}
    if settings.blob_store == "s3":
        body["object_store"] = "ok" if objects else "unreachable"
    return JSONResponse(
        body, status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "5"}
    )


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[AuthDep],
    responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def metrics_endpoint(
    store: StoreDep, settings: SettingsDep, metrics: MetricsDep, queue_depth: QueueDepthDep
) -> Response:
    """Prometheus metrics; behind the API key when keys are on (queue depth and live workers
    tell an outsider how busy the service is)."""
    metrics.queue_depth.set(await queue_depth.read(store))
    metrics.live_workers.set(len(await live_workers(store, settings.heartbeat_s)))
    metrics.results.counts = await store.result_counts()
    metrics.deliveries.counts = await store.delivery_counts()
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    dependencies=[AuthDep],
    responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def models(store: StoreDep, settings: SettingsDep) -> dict[str, list[dict[str, Any]]]:
    """The cards of the models live workers are serving, one per distinct sha256, with how
    many workers serve each: no worker's host or process, no path on any machine."""
    cards: dict[str, dict[str, Any]] = {}
    workers: Counter[str] = Counter()
    for beat in (await live_workers(store, settings.heartbeat_s)).values():
        card = beat["model"]
        cards[card["sha256"]] = card
        workers[card["sha256"]] += 1
    return {
        "models": [{**without_paths(card), "workers": workers[sha]} for sha, card in cards.items()]
    }


def without_paths(value: Any) -> Any:
    """The card with every file-system path cut to its last part (`/data/x/chest_xray` ->
    `chest_xray`): where a model was trained is nobody's business but its maker's."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_paths(item) for item in value]
    if isinstance(value, str) and ABSOLUTE_PATH.match(value):
        return PurePath(value.replace("\\", "/")).name
    return value
