"""The pictures of a finished job, drawn by the gateway on first request and then kept.

The worker stores only what the pictures are made of: the model input and the explanation
map (`shared.handoff`). Drawing and PNG-encoding an overlay and a heatmap costs about as much
CPU as the model itself on a CPU worker (bench/RESULTS.md), and many clients never ask for
them (triage lists, the seed's `POST /predict` callers who only read the label); here it is
paid once per picture actually requested, by a gateway that scales out more cheaply than
model workers do.

Pictures are drawn on the film's display copy at its own aspect ratio, the map carried back
through the preprocessing that made the model input (`shared.geometry`). A job stored without
a display copy or a placement (by an older gateway or a tool) gets them drawn on the model
input instead, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from starlette.concurrency import run_in_threadpool

from shared.display import DISPLAY_MEDIA_TYPE, decode_display
from shared.errors import BlobMissing, PictureExpired
from shared.geometry import Placement
from shared.handoff import input_pixels, unpack_map
from shared.imaging import encode_png
from shared.overlay import blend, colourise, film_heatmap, film_overlay
from shared.schemas import Job, utc_now
from shared.store import AsyncStore

PICTURES = ("overlay", "heatmap")


async def picture(store: AsyncStore, job: Job, name: str) -> bytes:
    """`name` (overlay or heatmap) of a succeeded job as PNG bytes."""
    kept, *sources = await store.blobs(job.job_id, (name, *SOURCES))
    if kept is not None:
        return kept
    png = await run_in_threadpool(_render, name, _Sources(*sources))
    if png is None:
        raise _expired(job, name)
    await store.keep_blob(job.job_id, name, png)
    return png


async def presigned_picture(store: AsyncStore, job: Job, name: str) -> str | None:
    """Where the blob store presigns (`PNEUMO_S3_PRESIGN`): a URL of the kept picture, drawn
    and kept first if it was not yet; None: serve the bytes."""
    url = await store.presigned_url(job.job_id, name)
    if url is None and store.presigns:
        await picture(store, job, name)
        url = await store.presigned_url(job.job_id, name)
    return url


async def model_input(store: AsyncStore, job: Job) -> bytes:
    """The radiograph as the model saw it (trimmed, resized), as PNG bytes."""
    stored_input = await store.blob(job.job_id, "input")
    pixels = input_pixels(stored_input) if stored_input is not None else None
    if pixels is None:
        raise _expired(job, "input")
    return await run_in_threadpool(encode_png, pixels)


async def film(store: AsyncStore, job: Job) -> tuple[bytes, str]:
    """The display copy of the film (`shared.display`) and its media type; the model input as
    a PNG for a job stored without one."""
    display = await store.blob(job.job_id, "display")
    if display is not None:
        return display, DISPLAY_MEDIA_TYPE
    return await model_input(store, job), "image/png"


@dataclass(frozen=True)
class _Sources:
    """What a picture is drawn from, as stored (None where missing)."""

    input: bytes | None
    cam: bytes | None
    display: bytes | None
    placement: bytes | None


SOURCES = tuple(each.name for each in fields(_Sources))


def _render(name: str, sources: _Sources) -> bytes | None:
    cam = unpack_map(sources.cam) if sources.cam is not None else None
    if cam is None:
        return None
    film_pixels = decode_display(sources.display)
    placement = Placement.from_bytes(sources.placement)
    if film_pixels is not None and placement is not None:
        if name == "overlay":
            return encode_png(film_overlay(film_pixels, cam, placement))
        return encode_png(film_heatmap(cam, placement, film_pixels.shape))
    pixels = input_pixels(sources.input) if sources.input is not None else None
    if pixels is None:
        return None
    drawing: np.ndarray = blend(pixels, cam) if name == "overlay" else colourise(cam, len(pixels))
    return encode_png(drawing)


def _expired(job: Job, name: str) -> PictureExpired | BlobMissing:
    """Past the job's TTL a picture's sources have expired; before it, they vanished (removed
    from the object store outside the service, or evicted from Redis)."""
    if utc_now() < job.expires_at:
        return BlobMissing(
            f"What the {name} of job {job.job_id} is drawn from is missing from the blob "
            "store, though the job has not expired; submit the image again."
        )
    return PictureExpired(f"The {name} of job {job.job_id} has expired.")
