"""The clinician's page: `/` (upload and results), `/model-card`, their static files, and the
model-input picture the page draws the Grad-CAM heatmap on.

The page is plain HTML, CSS and JavaScript from `gateway/static`: no build step, no CDN, so
it works on a hospital network with no internet access. It calls the same public API as any
client, sending the optional API key as `X-API-Key`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from gateway.deps import AuthDep, SettingsDep, StoreDep
from gateway.routes.jobs import ERRORS, PNG, find_job
from gateway.routes.ops import live_workers
from shared.config import Settings
from shared.errors import Conflict, NotFound
from shared.imaging import IntakeLimits, PreprocessParams, encode_png, load_radiograph
from shared.schemas import JobStatus
from shared.store import AsyncStore

router = APIRouter()
STATIC_FILES = {
    "app.js": "text/javascript",
    "card.js": "text/javascript",
    "common.js": "text/javascript",
    "style.css": "text/css",
}
# Revalidate on every load, so a gateway upgrade never runs against a stale script.
NO_STALE = {"Cache-Control": "no-cache"}


@cache
def static_text(name: str) -> str:
    return resources.files("gateway").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(static_text("index.html"), headers=NO_STALE)


@router.get("/model-card", response_class=HTMLResponse, include_in_schema=False)
async def model_card_page() -> HTMLResponse:
    return HTMLResponse(static_text("model-card.html"), headers=NO_STALE)


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    if name not in STATIC_FILES:  # a fixed list: no path from the URL ever reaches the disk
        raise NotFound(f"No static file {name!r}.")
    return Response(static_text(name), media_type=STATIC_FILES[name], headers=NO_STALE)


@router.get(
    "/v1/jobs/{job_id}/input.png",
    response_class=Response,
    responses={**PNG, **ERRORS},
    dependencies=[AuthDep],
    tags=["jobs"],
)
async def model_input(job_id: str, store: StoreDep, settings: SettingsDep) -> Response:
    """The radiograph as the model saw it (trimmed, resized): what the heatmap is aligned to."""
    job = await find_job(store, job_id)
    if job.status is not JobStatus.succeeded or job.result is None:
        raise Conflict(f"Job {job_id} is {job.status.value}.", code="not_ready")
    upload = await store.blob(job_id, "upload")
    if upload is None:
        raise NotFound(f"The upload of job {job_id} has expired.", code="picture_expired")
    params = await preprocessing_of(store, settings, job.result.model.sha256)
    limits = IntakeLimits.from_settings(settings)
    pixels = await run_in_threadpool(load_radiograph, upload, params, limits)
    return Response(
        encode_png(pixels),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},
    )


async def preprocessing_of(store: AsyncStore, settings: Settings, sha256: str) -> PreprocessParams:
    """The parameters of the model that made the result, from a live worker's card."""
    for beat in (await live_workers(store, settings.heartbeat_s)).values():
        if beat["model"].get("sha256") == sha256:
            return PreprocessParams.model_validate(beat["model"]["preprocessing"])
    # That model is no longer served: its defaults are the best guess.
    return PreprocessParams.model_validate({})
