"""The asynchronous API: submit, poll, fetch pictures, delete."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from fastapi.responses import RedirectResponse

from gateway.deps import (
    AuthDep,
    CallerDep,
    FinishedJobsDep,
    IdempotencyKeyDep,
    IntakeDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
)
from gateway.pictures import PICTURES, picture, presigned_picture
from gateway.security import Caller
from gateway.submission import one_file_part, submit, wait_for_final
from shared.errors import JobNotFound, JobNotReady, UnknownPath, shown
from shared.schemas import ErrorBody, Job, JobStatus, job_url
from shared.store import AsyncStore

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[AuthDep])
# OpenAPI documentation of the error shape for every status a client can cause.
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 408, 409, 413, 415, 422, 429, 503)
}
PNG: Responses = {200: {"content": {"image/png": {}}}}


async def find_job(store: AsyncStore, job_id: str, caller: Caller) -> Job:
    """The caller's job; another key's job is answered exactly as a job that never was."""
    job = None
    if is_canonical_id(job_id):  # anything else never reaches Redis
        job = await store.get(job_id)
    if job is None or not caller.may_see(job.owner):
        raise JobNotFound(f"No job {shown(job_id)} (it may have expired or been deleted).")
    return job


def is_canonical_id(value: str) -> bool:
    """Job and batch ids are lower-case hyphenated UUIDs, as the gateway makes them."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@router.post(
    "", status_code=202, response_model=Job, responses=ERRORS, dependencies=[Depends(one_file_part)]
)
async def create_job(
    file: Annotated[UploadFile, File(description="Chest radiograph, JPEG or PNG.")],
    response: Response,
    intake: IntakeDep,
    caller: CallerDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
    method: Annotated[str, Form(description="gradcam, gradcam++ or eigengradcam")] = "gradcam",
) -> Job:
    job = await submit(file, method, intake, idempotency_key=idempotency_key)
    metrics.jobs_submitted.inc()
    log.info("Job %s submitted by %s", job.job_id, caller.name)
    response.headers["Location"] = job_url(job.job_id)
    response.headers["Retry-After"] = "1"
    return job


@router.get("/{job_id}", response_model=Job, responses=ERRORS)
async def get_job(
    job_id: str,
    store: StoreDep,
    caller: CallerDep,
    settings: SettingsDep,
    finished: FinishedJobsDep,
    response: Response,
    wait: Annotated[float, Query(ge=0, description="Long-poll up to this many seconds.")] = 0,
) -> Job:
    job = await find_job(store, job_id, caller)
    if wait:
        job = await wait_for_final(store, finished, job, min(wait, settings.max_wait_s))
    if not job.status.is_final:
        response.headers["Retry-After"] = "1"
    return job


@router.get("/{job_id}/{name}.png", response_class=Response, responses={**PNG, **ERRORS})
async def get_picture(job_id: str, name: str, store: StoreDep, caller: CallerDep) -> Response:
    if name not in PICTURES:
        raise UnknownPath(f"No picture {shown(name)}; there are overlay.png and heatmap.png.")
    job = await find_succeeded_job(store, job_id, caller)
    url = await presigned_picture(store, job, name)
    if url is not None:  # the client fetches it from the object store, not through us
        return RedirectResponse(url, status_code=307)
    return png_response(await picture(store, job, name))


async def find_succeeded_job(store: AsyncStore, job_id: str, caller: Caller) -> Job:
    job = await find_job(store, job_id, caller)
    if job.status is not JobStatus.succeeded:
        raise JobNotReady(f"Job {job_id} is {job.status.value}; pictures exist once it succeeds.")
    return job


def png_response(data: bytes) -> Response:
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.delete("/{job_id}", status_code=204, responses=ERRORS)
async def delete_job(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    await find_job(store, job_id, caller)
    await store.delete(job_id)
    log.info("Job %s deleted by %s", job_id, caller.name)
    return Response(status_code=204)
