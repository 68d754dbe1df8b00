"""The original project's synchronous `POST /predict`, kept for its clients.

Same pipeline as /v1/jobs, but the request waits for the result. Each request gets its own
picture path (`outputs/<job_id>/gradcam.png`), never the seed's shared `outputs/gradcam.png`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Response, UploadFile
from fastapi.responses import JSONResponse

from gateway.deps import (
    AuthDep,
    CallerDep,
    FinishedJobsDep,
    IdempotencyKeyDep,
    IntakeDep,
    MetricsDep,
    StoreDep,
)
from gateway.pictures import picture
from gateway.routes.jobs import ERRORS, PNG, find_succeeded_job, png_response
from gateway.submission import failure_as_error, one_file_part, submit, wait_for_final
from shared.errors import PredictionTimeout
from shared.schemas import OUT_OF_DISTRIBUTION_MESSAGE, JobStatus, SeedPrediction, job_url

router = APIRouter(tags=["seed-compatible"], dependencies=[AuthDep])


@router.post(
    "/predict",
    response_model=SeedPrediction,
    responses={**ERRORS, 504: ERRORS[503]},
    dependencies=[Depends(one_file_part)],
)
async def predict(
    file: Annotated[UploadFile, File(description="Chest radiograph, JPEG or PNG.")],
    intake: IntakeDep,
    metrics: MetricsDep,
    finished: FinishedJobsDep,
    idempotency_key: IdempotencyKeyDep,
) -> SeedPrediction | JSONResponse:
    job = await submit(file, "gradcam", intake, idempotency_key=idempotency_key)
    metrics.jobs_submitted.inc()
    job = await wait_for_final(intake.store, finished, job, intake.settings.predict_timeout_s)
    if job.status is JobStatus.failed:
        raise failure_as_error(job)
    if job.result is None:
        return still_running(job.job_id)
    return SeedPrediction(
        # An out-of-distribution answer leads with the warning; the label stays for the record.
        message=None if job.result.reliable else OUT_OF_DISTRIBUTION_MESSAGE,
        assessment=job.result.assessment,
        prediction="Pneumonia" if job.result.label == "PNEUMONIA" else "Normal",
        confidence=round(job.result.confidence, 4),
        gradcam_image=f"outputs/{job.job_id}/gradcam.png",
        job_id=job.job_id,
    )


def still_running(job_id: str) -> JSONResponse:
    """The usual error body, plus where to poll: the job goes on after the wait ends."""
    timeout = PredictionTimeout("The prediction is still running; poll it.")
    return JSONResponse(
        {**timeout.to_dict(), "job_id": job_id},
        status_code=timeout.status,
        headers={"Location": job_url(job_id), "Retry-After": str(timeout.retry_after_s)},
    )


@router.get("/outputs/{job_id}/gradcam.png", response_class=Response, responses={**PNG, **ERRORS})
async def seed_gradcam(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    job = await find_succeeded_job(store, job_id, caller)
    return png_response(await picture(store, job, "overlay"))
