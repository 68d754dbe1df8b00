"""Operations: liveness, readiness, Prometheus metrics, model cards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import AuthDep, MetricsDep, SettingsDep, StoreDep
from gateway.serving import live_workers
from shared.schemas import ErrorBody

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis down or no worker with a model"}})
async def readyz(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    workers = await live_workers(store, settings.heartbeat_s)
    ready = bool(workers)
    body = {"status": "ready" if ready else "not_ready", "redis": "ok", "workers": len(workers)}
    return JSONResponse(
        body, status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "5"}
    )


@router.get("/metrics", response_class=Response, responses={503: {"model": ErrorBody}})
async def metrics_endpoint(store: StoreDep, settings: SettingsDep, metrics: MetricsDep) -> Response:
    metrics.queue_depth.set(await store.queue_depth(settings.queue_name))
    metrics.live_workers.set(len(await live_workers(store, settings.heartbeat_s)))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    dependencies=[AuthDep],
    responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def models(store: StoreDep, settings: SettingsDep) -> dict[str, list[dict[str, Any]]]:
    """The cards of the models live workers are serving, one per distinct sha256."""
    cards: dict[str, dict[str, Any]] = {}
    workers: dict[str, list[str]] = {}
    for name, beat in (await live_workers(store, settings.heartbeat_s)).items():
        card = beat["model"]
        cards[card["sha256"]] = card
        workers.setdefault(card["sha256"], []).append(name)
    return {"models": [{**card, "workers": sorted(workers[sha])} for sha, card in cards.items()]}
