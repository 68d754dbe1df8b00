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

from gateway.deps import AuthDep, StoreDep
from gateway.pictures import model_input
from gateway.routes.jobs import ERRORS, PNG, find_succeeded_job, png_response
from shared.errors import UnknownPath

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
        raise UnknownPath(f"No static file {name!r}.")
    return Response(static_text(name), media_type=STATIC_FILES[name], headers=NO_STALE)


@router.get(
    "/v1/jobs/{job_id}/input.png",
    response_class=Response,
    responses={**PNG, **ERRORS},
    dependencies=[AuthDep],
    tags=["jobs"],
)
async def model_input_picture(job_id: str, store: StoreDep) -> Response:
    """The radiograph as the model saw it (trimmed, resized): what the heatmap is aligned to."""
    job = await find_succeeded_job(store, job_id)
    return png_response(await model_input(store, job))
