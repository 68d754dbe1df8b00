"""The original project's synchronous `POST /predict`, kept for its clients.

Same pipeline as /v1/jobs, but the request waits for the result. Each request gets its own
picture path (`outputs/<job_id>/gradcam.png`), never the seed's shared `outputs/gradcam.png`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile
from fastapi.responses import JSONResponse

from gateway.deps import AuthDep, CeleryDep, ClientDep, MetricsDep, SettingsDep, StoreDep
from gateway.routes.jobs import ERRORS, PNG, find_job
from gateway.submission import failure_as_error, submit, wait_for_final
from shared.errors import Conflict, NotFound
from shared.schemas import JobStatus, SeedPrediction, job_url

router = APIRouter(tags=["seed-compatible"], dependencies=[AuthDep])


@router.post("/predict", response_model=SeedPrediction, responses={**ERRORS, 504: ERRORS[503]})
async def predict(
    file: Annotated[UploadFile, File(description="Chest radiograph, JPEG or PNG.")],
    store: StoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    client: ClientDep,
) -> SeedPrediction | JSONResponse:
    job = await submit(file, "gradcam", store, celery, settings, client_scope=client.scope)
    metrics.jobs_submitted.inc()
    job = await wait_for_final(store, job, settings.predict_timeout_s)
    if job.status is JobStatus.failed:
        raise failure_as_error(job)
    if job.result is None:
        return JSONResponse(
            {
                "error": {
                    "code": "timeout",
                    "message": "The prediction is still running; poll it.",
                },
                "job_id": job.job_id,
            },
            status_code=504,
            headers={"Location": job_url(job.job_id), "Retry-After": "1"},
        )
    return SeedPrediction(
        prediction="Pneumonia" if job.result.label == "PNEUMONIA" else "Normal",
        confidence=round(job.result.confidence, 4),
        gradcam_image=f"outputs/{job.job_id}/gradcam.png",
        job_id=job.job_id,
    )


@router.get("/outputs/{job_id}/gradcam.png", response_class=Response, responses={**PNG, **ERRORS})
async def seed_gradcam(job_id: str, store: StoreDep) -> Response:
    job = await find_job(store, job_id)
    if job.status is not JobStatus.succeeded:
        raise Conflict(f"Job {job_id} is {job.status.value}.", code="not_ready")
    data = await store.blob(job_id, "overlay")
    if data is None:
        raise NotFound(f"The overlay of job {job_id} has expired.", code="picture_expired")
    return Response(data, media_type="image/png")
