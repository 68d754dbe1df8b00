"""The Python client against a live stack: `pneumo gateway` (uvicorn), Redis, a Celery worker.

Also where DICOM privacy is proven end to end: a file with a patient's name, id and dates goes
through the real gateway and worker, and no trace of them is left in Redis or either log.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000MCLossless

from client.api import (
    AsyncClient,
    Client,
    ClientError,
    RetryPolicy,
    WaitTimeout,
    retry_after_seconds,
)
from shared.schemas import JobStatus
from tests.support.dicoms import PATIENT_TRACES, DicomSpec, dicom_file, encapsulated_file, ramp
from tests.support.images import phantom_jpeg, phantom_png
from tests.support.processes import GatewayProcess, worker_environment
from tests.support.redis_values import all_redis_values

pytestmark = pytest.mark.slow
PARKED_QUEUE = "parked-queue"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    payloads = {
        "chest.png": phantom_png(seed=31),
        "chest.jpg": phantom_jpeg(seed=32, pneumonia=False),
        "chest.dcm": dicom_file(
            DicomSpec(
                (np.rint(ramp(160, 128)) * 16).astype("uint16"),
                bits_stored=12,
                photometric="MONOCHROME1",
            )
        ),  # fmt: skip
        "notes.png": b"a text file with an image's name",
        "compressed.dcm": encapsulated_file(
            JPEG2000MCLossless, b"\xff\x4f\xff\x51", 64, 64, bits=12
        ),
    }
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in payloads}


def test_predict_download_and_delete(gateway: GatewayProcess, files, tmp_path: Path) -> None:
    with Client(gateway.url) as client:
        job = client.predict(files["chest.png"], timeout=30)
        assert job.status is JobStatus.succeeded and job.result is not None
        assert job.result.label in ("NORMAL", "PNEUMONIA") and 0 <= job.result.probability <= 1
        assert job.result.model.synthetic is True
        overlay = client.download_overlay(job, tmp_path / "overlay.png")
        with Image.open(overlay) as picture, Image.open(files["chest.png"]) as film:
            assert picture.size == film.size  # drawn on the film, not on the model's input
        assert client.status(job.job_id) == job
        client.delete(job)
        with pytest.raises(ClientError) as missing:
            client.status(job)
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")


def test_submit_then_wait_by_id_and_batches(gateway: GatewayProcess, files) -> None:
    with Client(gateway.url) as client:
        queued = client.submit(files["chest.jpg"], method="gradcam++")
        assert queued.status in (JobStatus.queued, JobStatus.running)
        done = client.wait(queued.job_id, timeout=30)
        assert done.status is JobStatus.succeeded and done.explanation.method == "gradcam++"
        created = client.submit_batch([files["chest.png"], files["chest.dcm"]])
        for job_id in created.job_ids:
            client.wait(job_id, timeout=30)
        batch = client.batch(created.batch_id)
        assert batch.done and batch.counts["succeeded"] == 2
        assert client.models()[0]["name"] == "tiny-test-model"


def test_refusals_carry_the_gateway_code(gateway: GatewayProcess, files) -> None:
    with Client(gateway.url) as client:
        with pytest.raises(ClientError) as text_file:
            client.submit(files["notes.png"])
        with pytest.raises(ClientError) as multi_component:
            client.submit(files["compressed.dcm"])
    assert (text_file.value.status, text_file.value.code) == (415, "unsupported_format")
    assert (multi_component.value.status, multi_component.value.code) == (
        415, "unsupported_transfer_syntax",
    )  # fmt: skip
    assert "JPEG 2000 Part 2 Multi-component" in multi_component.value.message


def test_async_client_runs_many_at_once(gateway: GatewayProcess, files, tmp_path: Path) -> None:
    async def run() -> list:
        async with AsyncClient(gateway.url) as client:
            paths = [files["chest.png"], files["chest.jpg"], files["chest.dcm"]]
            jobs = await asyncio.gather(*(client.predict(path, timeout=30) for path in paths))
            await client.download_overlay(jobs[2], tmp_path / "dicom-overlay.png")
            with pytest.raises(ClientError):
                await client.predict(files["notes.png"])
            return jobs

    jobs = asyncio.run(run())
    assert [job.status for job in jobs] == [JobStatus.succeeded] * 3
    assert len({job.job_id for job in jobs}) == 3
    assert (tmp_path / "dicom-overlay.png").read_bytes().startswith(b"\x89PNG")


def test_no_dicom_tag_reaches_redis_or_the_logs(
    gateway: GatewayProcess, worker, redis_server, files
) -> None:
    with Client(gateway.url) as client:
        job = client.predict(files["chest.dcm"], timeout=30)
        model_input = client.http.get(f"/v1/jobs/{job.job_id}/input.png")
    assert model_input.status_code == 200
    assert Image.open(io.BytesIO(model_input.content)).size == (64, 64)
    stored = all_redis_values(redis_server.client())
    assert any(job.job_id.encode() in value for value in stored)  # the scan does see our job
    for trace in PATIENT_TRACES:
        assert not any(trace in value for value in stored), trace
        assert trace.decode() not in gateway.log_text() + worker.log_text(), trace


@pytest.fixture()
def parked_gateway(redis_server, tiny_model_dir, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose queue no worker reads, with room for one job: a real 503 after that."""
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_QUEUE_NAME=PARKED_QUEUE, PNEUMO_MAX_QUEUE_DEPTH="1"
    )
    gateway = GatewayProcess(environment, tmp_path / "gateway.log").start()
    try:
        yield gateway
    finally:
        gateway.stop()
        redis_server.client().delete(PARKED_QUEUE)


class SteppingClock:
    """A monotonic clock that moves on by `step_s` each time it is read."""

    def __init__(self, step_s: float):
        self.step_s, self.now = step_s, 0.0

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def test_retries_wait_as_retry_after_advises_up_to_the_policy_cap(
    parked_gateway: GatewayProcess, files
) -> None:
    """The full queue's 503 advises Retry-After: 5, where backoff alone would ask for 0.01 s.
    The clients' sleeps only record what they were asked for."""
    patient = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=60.0)
    capped = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=1.0)
    waits: list[float] = []
    capped_async_waits: list[float] = []

    async def record_async_wait(delay_s: float) -> None:
        capped_async_waits.append(delay_s)

    async def submit_async() -> None:
        async with AsyncClient(parked_gateway.url, retry=capped, sleep=record_async_wait) as client:
            await client.submit(files["chest.png"])

    with Client(parked_gateway.url, retry=patient, sleep=waits.append) as client:
        client.submit(files["chest.png"])  # fills the queue
        with pytest.raises(ClientError) as refused:
            client.submit(files["chest.png"])
    with pytest.raises(ClientError) as async_refused:
        asyncio.run(submit_async())
    for error in (refused.value, async_refused.value):
        assert (error.status, error.code) == (503, "queue_full")
    # Two waits, then the third answer is final.
    assert waits == [5.0, 5.0] and capped_async_waits == [1.0, 1.0]


def test_a_retry_after_the_queue_drains_is_accepted(
    parked_gateway: GatewayProcess, redis_server, files
) -> None:
    waits: list[float] = []

    def drain_while_waiting(delay_s: float) -> None:
        waits.append(delay_s)
        redis_server.client().delete(PARKED_QUEUE)

    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=1.0)
    with Client(parked_gateway.url, retry=policy, sleep=drain_while_waiting) as client:
        client.submit(files["chest.png"])  # fills the queue
        accepted = client.submit(files["chest.png"])
    assert accepted.status is JobStatus.queued and waits == [1.0]


def test_wait_gives_up_once_its_clock_passes_the_timeout(
    parked_gateway: GatewayProcess, files
) -> None:
    """Each reading of the clock moves it 0.9 s: one short long-poll, then WaitTimeout."""
    with Client(parked_gateway.url, clock=SteppingClock(step_s=0.9)) as client:
        queued = client.submit(files["chest.png"])  # no worker reads the parked queue
        with pytest.raises(WaitTimeout) as gave_up:
            client.wait(queued.job_id, timeout=1.0)
    assert gave_up.value.job_id == queued.job_id and gave_up.value.code == "wait_timeout"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
