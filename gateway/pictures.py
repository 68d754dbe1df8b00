"""The pictures of a finished job, drawn by the gateway on first request and then kept.

The worker stores only what the pictures are made of: the model input and the explanation
map (`shared.handoff`). Drawing and PNG-encoding an overlay and a heatmap costs about as much
CPU as the model itself on a CPU worker (bench/RESULTS.md), and many clients never ask for
them (triage lists, the seed's `POST /predict` callers who only read the label); here it is
paid once per picture actually requested, by a gateway that scales out more cheaply than
model workers do.
"""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from shared.errors import PictureExpired
from shared.handoff import input_pixels, unpack_map
from shared.imaging import encode_png
from shared.overlay import blend, colourise
from shared.schemas import Job
from shared.store import AsyncStore

PICTURES = ("overlay", "heatmap")


async def picture(store: AsyncStore, job: Job, name: str) -> bytes:
    """`name` (overlay or heatmap) of a succeeded job as PNG bytes."""
    kept, stored_input, stored_map = await store.blobs(job.job_id, (name, "input", "cam"))
    if kept is not None:
        return kept
    if stored_input is None or stored_map is None:
        raise _expired(job, name)
    png = await run_in_threadpool(_render, name, stored_input, stored_map)
    if png is None:
        raise _expired(job, name)
    await store.keep_blob(job.job_id, name, png)
    return png


async def model_input(store: AsyncStore, job: Job) -> bytes:
    """The radiograph as the model saw it (trimmed, resized), as PNG bytes."""
    stored_input = await store.blob(job.job_id, "input")
    pixels = input_pixels(stored_input) if stored_input is not None else None
    if pixels is None:
        raise _expired(job, "input")
    return await run_in_threadpool(encode_png, pixels)


def _render(name: str, stored_input: bytes, stored_map: bytes) -> bytes | None:
    pixels, cam = input_pixels(stored_input), unpack_map(stored_map)
    if pixels is None or cam is None:
        return None
    drawing: np.ndarray = blend(pixels, cam) if name == "overlay" else colourise(cam, len(pixels))
    return encode_png(drawing)


def _expired(job: Job, name: str) -> PictureExpired:
    return PictureExpired(f"The {name} of job {job.job_id} has expired.")
