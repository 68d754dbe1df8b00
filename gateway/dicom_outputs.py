"""A succeeded job's DICOM results (`shared.dicom_results`), built from what the store keeps.

Built on demand, by the gateway for `GET /v1/jobs/{id}/sr.dcm|sc.dcm` and by the delivery
process (`gateway.dicom_delivery`), rather than by the worker after its prediction: the worker
never reads the source header (it stays out of the model's process and its messages), the
overlay is drawn from the same display copy and map as `overlay.png`, and nothing carrying a
patient's identifiers is stored beyond the header itself, which expires with the job. The
objects' UIDs are derived from the job, so every build gives the same instances.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from shared.dicom_header import SOURCE_HEADER_BLOB, parse_source_header
from shared.dicom_results import DicomResults, Pictures, results_as_dicom
from shared.display import decode_display
from shared.errors import NoDicomResults, PictureExpired
from shared.geometry import Placement
from shared.handoff import unpack_map
from shared.schemas import Job
from shared.store import AsyncStore

# What the results are made of, in the order `build` takes them.
SOURCES: Sequence[str] = (SOURCE_HEADER_BLOB, "display", "cam", "placement")


def build(job: Job, stored: Sequence[bytes | None]) -> DicomResults:
    """Both objects of a succeeded `job` from its stored `SOURCES`. Raises `NoDicomResults`
    for a job without a source header, `PictureExpired` when the overlay cannot be drawn."""
    header, display, cam, placement = stored
    if header is None:
        raise NoDicomResults(
            f"Job {job.job_id} did not come from the DICOM network (or its source header has "
            "expired): it has no DICOM results."
        )
    film = decode_display(display)
    explanation = unpack_map(cam) if cam is not None else None
    where = Placement.from_bytes(placement)
    if film is None or explanation is None or where is None:
        raise PictureExpired(f"The overlay of job {job.job_id} can no longer be drawn.")
    return results_as_dicom(parse_source_header(header), job, Pictures(film, explanation, where))


async def results_of(store: AsyncStore, job: Job) -> DicomResults:
    stored = await store.blobs(job.job_id, SOURCES)
    return await run_in_threadpool(build, job, stored)
