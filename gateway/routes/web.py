"""The clinician's page: `/` (upload and results), `/model-card`, their static files, the
film copy the page shows as the original and draws the Grad-CAM heatmap on, and the
model-input picture.

The page is plain HTML, CSS and JavaScript from `gateway/static`: no build step, no CDN, so
it works on a hospital network with no internet access. It calls the same public API as any
client, sending the optional API key as `X-API-Key`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from gateway.deps import AuthDep, CallerDep, StoreDep
from gateway.pictures import film, model_input
from gateway.routes.jobs import ERRORS, PNG, find_succeeded_job, png_response
from shared.errors import UnknownPath, shown

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
        raise UnknownPath(f"No static file {shown(name)}.")
    return Response(static_text(name), media_type=STATIC_FILES[name], headers=NO_STALE)


@router.get(
    "/v1/jobs/{job_id}/input.png",
    response_class=Response,
    responses={**PNG, **ERRORS},
    dependencies=[AuthDep],
    tags=["jobs"],
)
async def model_input_picture(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """The radiograph as the model saw it (trimmed, resized): what the heatmap is aligned to."""
    job = await find_succeeded_job(store, job_id, caller)
    return png_response(await model_input(store, job))


@router.get(
    "/v1/jobs/{job_id}/film",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **ERRORS},
    dependencies=[AuthDep],
    tags=["jobs"],
)
async def film_picture(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """The film at its own aspect ratio (long side `PNEUMO_DISPLAY_MAX_SIDE`, pixels only): what
    overlay.png and heatmap.png are drawn on, pixel for pixel."""
    job = await find_succeeded_job(store, job_id, caller)
    data, media_type = await film(store, job)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})
