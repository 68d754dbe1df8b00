"""The asynchronous API: submit, poll, fetch pictures, delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from gateway.deps import (
    AuthDep,
    FinishedJobsDep,
    IdempotencyKeyDep,
    IntakeDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
)
from gateway.pictures import PICTURES, picture
from gateway.submission import submit, wait_for_final
from shared.errors import JobNotFound, JobNotReady, UnknownPath
from shared.schemas import ErrorBody, Job, JobStatus, job_url
from shared.store import AsyncStore

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[AuthDep])
# OpenAPI documentation of the error shape for every status a client can cause.
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)
}
PNG: Responses = {200: {"content": {"image/png": {}}}}


async def find_job(store: AsyncStore, job_id: str) -> Job:
    job = None
    if _is_job_id(job_id):
        job = await store.get(job_id)
    if job is None:
        raise JobNotFound(f"No job {job_id!r} (it may have expired or been deleted).")
    return job


def _is_job_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@router.post("", status_code=202, response_model=Job, responses=ERRORS)
async def create_job(
    file: Annotated[UploadFile, File(description="Chest radiograph, JPEG or PNG.")],
    response: Response,
    intake: IntakeDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
    method: Annotated[str, Form(description="gradcam, gradcam++ or hirescam")] = "gradcam",
) -> Job:
    job = await submit(file, method, intake, idempotency_key=idempotency_key)
    metrics.jobs_submitted.inc()
    response.headers["Location"] = job_url(job.job_id)
    response.headers["Retry-After"] = "1"
    return job


@router.get("/{job_id}", response_model=Job, responses=ERRORS)
async def get_job(
    job_id: str,
    store: StoreDep,
    settings: SettingsDep,
    finished: FinishedJobsDep,
    response: Response,
    wait: Annotated[float, Query(ge=0, description="Long-poll up to this many seconds.")] = 0,
) -> Job:
    job = await find_job(store, job_id)
    if wait:
        job = await wait_for_final(store, finished, job, min(wait, settings.max_wait_s))
    if not job.status.is_final:
        response.headers["Retry-After"] = "1"
    return job


@router.get("/{job_id}/{name}.png", response_class=Response, responses={**PNG, **ERRORS})
async def get_picture(job_id: str, name: str, store: StoreDep) -> Response:
    if name not in PICTURES:
        raise UnknownPath(f"No picture {name!r}; there are overlay.png and heatmap.png.")
    job = await find_succeeded_job(store, job_id)
    return png_response(await picture(store, job, name))


async def find_succeeded_job(store: AsyncStore, job_id: str) -> Job:
    job = await find_job(store, job_id)
    if job.status is not JobStatus.succeeded:
        raise JobNotReady(f"Job {job_id} is {job.status.value}; pictures exist once it succeeds.")
    return job


def png_response(data: bytes) -> Response:
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.delete("/{job_id}", status_code=204, responses=ERRORS)
async def delete_job(job_id: str, store: StoreDep) -> Response:
    await find_job(store, job_id)
    await store.delete(job_id)
    return Response(status_code=204)
