"""A job's results as DICOM (`gateway.dicom_outputs`): the SR and the Secondary Capture that
`pneumo dicom-delivery` sends to the PACS, for jobs from the DICOM network."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from gateway.deps import AuthDep, CallerDep, StoreDep
from gateway.dicom_outputs import results_of
from gateway.routes.jobs import ERRORS, find_succeeded_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[AuthDep])
DICOM_MEDIA_TYPE = "application/dicom"
DICOM: dict[int | str, dict[str, Any]] = {200: {"content": {DICOM_MEDIA_TYPE: {}}}}


@router.get("/{job_id}/sr.dcm", response_class=Response, responses={**DICOM, **ERRORS})
async def structured_report(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """The Comprehensive SR (TID 1500) of a succeeded job from the DICOM network."""
    job = await find_succeeded_job(store, job_id, caller)
    return dicom_response((await results_of(store, job)).structured_report)


@router.get("/{job_id}/sc.dcm", response_class=Response, responses={**DICOM, **ERRORS})
async def secondary_capture(job_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """The Secondary Capture of the overlay, at the film's size, of such a job."""
    job = await find_succeeded_job(store, job_id, caller)
    return dicom_response((await results_of(store, job)).secondary_capture)


def dicom_response(data: bytes) -> Response:
    # Patient identifiers inside: no shared cache may keep it.
    return Response(data, media_type=DICOM_MEDIA_TYPE, headers={"Cache-Control": "no-store"})
