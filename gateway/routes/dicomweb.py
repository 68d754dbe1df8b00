"""STOW-RS (PS3.18 10.5): `POST /dicomweb/studies` takes DICOM instances as
`multipart/related; type="application/dicom"`, each through the DICOM intake the listener
uses (`gateway.dicom_intake`), and answers the standard response dataset in
`application/dicom+json`: each stored instance in ReferencedSOPSequence, its RetrieveURL the
job's URL (the job id is its last segment); each refused one in FailedSOPSequence with its
FailureReason. 200 when all were taken, 202 when some were, 409 when none were.
`POST /dicomweb/studies/{study}` takes only instances of that study; others fail with
0x0110 (processing failure), as Orthanc's DICOMweb plugin answers them.

Unlike `/v1/batches`, instances are independent: a bad one fails alone, as a PACS expects.
A request refused whole (auth, size, content type, overload) gets the usual JSON error.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request, Response
from pydicom.dataset import Dataset

from gateway.deps import AuthDep, IntakeDep, MetricsDep
from gateway.dicom_intake import Identity, Refused, Status, identify, take_instance
from gateway.multipart_related import Part, read_parts, related_boundary
from gateway.prometheus_metrics import Metrics
from gateway.routes.jobs import ERRORS
from gateway.submission import Intake, check_queue_depth
from shared.errors import InvalidRequest, UnsupportedFormat, UploadTooLarge
from shared.schemas import Job, job_url

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], dependencies=[AuthDep])
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
STOW_RESPONSES = {
    **ERRORS,  # first: STOW-RS's own 409 (no instance taken) replaces the JSON error's
    200: {"content": {DICOM_JSON: {}}, "description": "Every instance was taken."},
    202: {"content": {DICOM_JSON: {}}, "description": "Some instances were taken."},
    409: {"content": {DICOM_JSON: {}}, "description": "No instance was taken."},
}


@router.post("/studies", response_class=Response, responses=STOW_RESPONSES)
async def store_instances(request: Request, intake: IntakeDep, metrics: MetricsDep) -> Response:
    """Store instances (STOW-RS): each CR or DX image becomes a job."""
    return await store(request, intake, metrics, study=None)


@router.post("/studies/{study}", response_class=Response, responses=STOW_RESPONSES)
async def store_study_instances(
    study: str, request: Request, intake: IntakeDep, metrics: MetricsDep
) -> Response:
    """Store instances of one study (STOW-RS): instances of any other study fail."""
    return await store(request, intake, metrics, study=study)


async def store(request: Request, intake: Intake, metrics: Metrics, study: str | None) -> Response:
    settings = intake.settings
    boundary = related_boundary(request.headers.get("content-type"), DICOM)
    # Refused whole, before the body is read.
    await check_queue_depth(intake.store, settings, intake.queue_depth)
    parts = await read_parts(
        request.stream(), boundary, settings.max_upload_bytes, settings.max_batch_files
    )
    if not parts:
        raise InvalidRequest("The multipart/related body holds no instance.")
    taken: list[tuple[Identity, Job]] = []
    failed: list[tuple[Identity | None, Refused]] = []
    for index, part in enumerate(parts):
        identity, outcome = await store_part(part, intake, study, counted=index == 0)
        if isinstance(outcome, Refused):
            failed.append((identity, outcome))
            count_refusal(metrics, outcome)
        else:
            assert identity is not None
            taken.append((identity, outcome))
    metrics.jobs_submitted.inc(len(taken))
    base_url = str(request.base_url).rstrip("/")
    body = stow_response(taken, failed, base_url)
    status = 200 if not failed else 202 if taken else 409
    return Response(json.dumps(body), status_code=status, media_type=DICOM_JSON)


async def store_part(
    part: Part, intake: Intake, study: str | None, counted: bool
) -> tuple[Identity | None, Job | Refused]:
    """One part: its identity (None when it names none) and its job, or why it has none."""
    identity = None
    try:
        if part.content_type != DICOM:
            raise Refused.from_error(UnsupportedFormat(f"A part is not {DICOM}."))
        identity = identify(part.data)
        if study is not None and identity.study_instance != study:
            raise Refused(
                Status.PROCESSING_FAILURE,
                "study_mismatch",
                "The instance belongs to another study than the one the request names.",
            )
        if part.cut(intake.settings.max_upload_bytes):
            limit = intake.settings.max_upload_bytes
            raise Refused.from_error(UploadTooLarge(f"The instance exceeds {limit} bytes."))
        return identity, await take_instance(part.data, intake, counted=counted)
    except Refused as refusal:
        log.info("STOW-RS instance refused: 0x%04X %s", refusal.status, refusal.comment)
        return identity, refusal


def count_refusal(metrics: Metrics, refusal: Refused) -> None:
    """Counted as `POST /v1/jobs` counts a bad file (`gateway.app`); overloads are not."""
    if refusal.status is not Status.OUT_OF_RESOURCES:
        metrics.jobs_rejected.labels(refusal.code).inc()


def stow_response(
    taken: list[tuple[Identity, Job]],
    failed: list[tuple[Identity | None, Refused]],
    base_url: str,
) -> dict:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-1) as DICOM JSON."""
    response = Dataset()
    referenced = []
    for identity, job in taken:
        item = _instance_item(identity)
        item.RetrieveURL = base_url + job_url(job.job_id)
        referenced.append(item)
    refused = []
    for maybe_identity, refusal in failed:
        item = _instance_item(maybe_identity) if maybe_identity else Dataset()
        item.FailureReason = int(refusal.status)
        refused.append(item)
    if referenced:
        response.ReferencedSOPSequence = referenced
    if refused:
        response.FailedSOPSequence = refused
    return response.to_json_dict()


def _instance_item(identity: Identity) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = identity.sop_class
    item.ReferencedSOPInstanceUID = identity.sop_instance
    return item
