"""`pneumo dicom-listener` as a process, fed by a real pynetdicom SCU, in front of the session's
real Redis and worker: each radiograph becomes a finished job, refusals carry their DICOM
status and leave no job, and the patient's identifiers live only in the job's header blob."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless

from shared.dicom_header import SOURCE_HEADER_BLOB, parse_source_header
from shared.store import parse_job
from tests.support.dicom_network import (
    COMPUTED_RADIOGRAPHY,
    CT_IMAGE,
    DX_FOR_PRESENTATION,
    DX_FOR_PROCESSING,
    associate,
    jobs_by_instance,
    radiograph,
    store_all,
)
from tests.support.dicoms import PATIENT_TRACES
from tests.support.lossless_jpeg import encode_lossless_jpeg
from tests.support.processes import (
    DicomListenerProcess,
    RedisServer,
    free_port,
    wait_until,
    worker_environment,
)
from tests.support.redis_values import values_by_key

pytestmark = pytest.mark.slow
PARKED_QUEUE = "parked-dicom-queue"


@pytest.fixture(scope="module")
def listener(
    redis_server: RedisServer,
    tiny_model_dir: Path,
    worker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DicomListenerProcess]:
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_DICOM_ALLOWED_AETS="TESTSCU,ORTHANC"
    )
    log_path = tmp_path_factory.mktemp("listener") / "listener.log"
    process = DicomListenerProcess(environment, log_path).start()
    yield process
    process.stop()


def final_job(client, job_id: str, timeout_s: float = 30):
    found = {}

    def is_final() -> bool:
        found["job"] = parse_job(job_id, client.get(f"pneumo:job:{job_id}"))
        return found["job"] is not None and found["job"].status.is_final

    wait_until(is_final, timeout_s, f"job {job_id} to finish")
    return found["job"]


def status_of(response: Dataset) -> int:
    return int(response.Status)


def test_echo_and_each_radiograph_class_become_finished_jobs(
    listener: DicomListenerProcess, redis_server: RedisServer, worker, api
) -> None:
    assoc = associate(listener.port)
    assert assoc.is_established
    assert status_of(assoc.send_c_echo()) == 0x0000
    assoc.release()
    classes = (COMPUTED_RADIOGRAPHY, DX_FOR_PRESENTATION, DX_FOR_PROCESSING)
    datasets = [radiograph(sop_class, seed=index) for index, sop_class in enumerate(classes)]
    responses = store_all(listener.port, datasets)
    assert [status_of(response) for response in responses] == [0x0000] * 3
    client = redis_server.client()
    jobs = jobs_by_instance(client)
    for dataset in datasets:
        job_id = jobs[str(dataset.SOPInstanceUID)]  # queued before success was answered
        job = final_job(client, job_id)
        assert job.status.value == "succeeded" and job.result is not None, job.error
        header = parse_source_header(client.get(f"pneumo:blob:{job_id}:{SOURCE_HEADER_BLOB}"))
        assert header.StudyInstanceUID == dataset.StudyInstanceUID
        assert header.PatientID == dataset.PatientID and "PixelData" not in header
    # The identifiers are in the header blobs and nowhere else: not in a record, a message,
    # the upload, nor either process's log; deleting the job erases them.
    ours = {jobs[str(dataset.SOPInstanceUID)] for dataset in datasets}
    for key, values in values_by_key(client).items():
        if any(trace in value for trace in PATIENT_TRACES for value in (key, *values)):
            assert key.decode().endswith(f":{SOURCE_HEADER_BLOB}"), key
    logs = listener.log_text() + worker.log_text()
    assert not any(trace.decode() in logs for trace in PATIENT_TRACES)
    for job_id in ours:
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert not list(client.scan_iter(f"pneumo:*{job_id}*"))


def test_compressed_instances_are_negotiated_and_decoded(
    listener: DicomListenerProcess, redis_server: RedisServer, api
) -> None:
    jpeg_ls, jpeg_2000, lossless_jpeg = (radiograph(seed=seed) for seed in (4, 5, 6))
    jpeg_ls.compress(JPEGLSLossless)
    jpeg_2000.compress(JPEG2000Lossless)
    lossless_jpeg.PixelData = encapsulate([encode_lossless_jpeg(lossless_jpeg.pixel_array, 12)])
    lossless_jpeg["PixelData"].VR = "OB"
    lossless_jpeg.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    datasets = [jpeg_ls, jpeg_2000, lossless_jpeg]
    syntaxes = (JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1)
    responses = store_all(listener.port, datasets, syntaxes=syntaxes)
    assert [status_of(response) for response in responses] == [0x0000] * 3
    client = redis_server.client()
    jobs = jobs_by_instance(client)
    for dataset in datasets:
        job = final_job(client, jobs[str(dataset.SOPInstanceUID)])
        assert job.status.value == "succeeded", job.error
        assert api.delete(f"/v1/jobs/{job.job_id}").status_code == 204


def test_calling_ae_titles_not_listed_are_rejected_at_association(
    listener: DicomListenerProcess,
) -> None:
    stranger = associate(listener.port, calling="STRANGER")
    assert stranger.is_rejected and not stranger.is_established
    allowed = associate(listener.port, calling="ORTHANC")
    assert allowed.is_established
    allowed.release()


def test_refusals_carry_their_status_and_make_no_job(
    listener: DicomListenerProcess, redis_server: RedisServer
) -> None:
    computed_tomography = radiograph(CT_IMAGE)
    corrupt = radiograph(seed=1)
    corrupt.PixelData = corrupt.PixelData[: len(corrupt.PixelData) // 2]  # half the rows
    responses = store_all(listener.port, [computed_tomography, corrupt])
    assert [status_of(response) for response in responses] == [0x0122, 0xC000]
    assert "corrupt_image" in responses[1].ErrorComment
    jobs = jobs_by_instance(redis_server.client())
    assert str(computed_tomography.SOPInstanceUID) not in jobs
    assert str(corrupt.SOPInstanceUID) not in jobs


def test_a_full_queue_is_out_of_resources(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path: Path, api
) -> None:
    """A listener whose queue no worker reads, with room for one job: the second instance is
    refused, as `POST /v1/jobs` answers 503 queue_full."""
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_QUEUE_NAME=PARKED_QUEUE,
        PNEUMO_MAX_QUEUE_DEPTH="1", PNEUMO_DICOM_ALLOWED_AETS="TESTSCU",
    )  # fmt: skip
    process = DicomListenerProcess(environment, tmp_path / "listener.log").start()
    try:
        first, second = radiograph(seed=2), radiograph(seed=3)
        responses = store_all(process.port, [first, second])
    finally:
        process.stop()
        redis_server.client().delete(PARKED_QUEUE)
    assert [status_of(response) for response in responses] == [0x0000, 0xA700]
    assert responses[1].ErrorComment.startswith("queue_full")
    jobs = jobs_by_instance(redis_server.client())
    assert str(first.SOPInstanceUID) in jobs and str(second.SOPInstanceUID) not in jobs
    assert api.delete(f"/v1/jobs/{jobs[str(first.SOPInstanceUID)]}").status_code == 204


def test_a_stopping_listener_answers_the_associations_still_open(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path: Path, api
) -> None:
    """SIGTERM (docker stop): no new association, but one already open still gets its
    C-STORE queued and answered; the process then exits on its own."""
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_DICOM_ALLOWED_AETS="TESTSCU"
    )
    process = DicomListenerProcess(environment, tmp_path / "listener.log").start()
    assert process.process is not None
    try:
        assoc = associate(process.port)
        assert assoc.is_established
        process.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "Stopping" in process.log_text(), 10, "the listener to stop listening")
        with pytest.raises(ConnectionRefusedError):  # the port is closed to new callers
            socket.create_connection(("127.0.0.1", process.port), timeout=2).close()
        late = radiograph(seed=7)
        assert status_of(assoc.send_c_store(late)) == 0x0000
        assoc.release()
        assert process.process.wait(10) == 0
    finally:
        process.stop()
    job_id = jobs_by_instance(redis_server.client())[str(late.SOPInstanceUID)]
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_a_store_that_is_away_is_out_of_resources(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Redis unreachable: the sender is told to try later (0xA700), as HTTP answers 503."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    environment = worker_environment(nowhere, tiny_model_dir, PNEUMO_DICOM_ALLOWED_AETS="TESTSCU")
    process = DicomListenerProcess(environment, tmp_path / "listener.log").start()
    try:
        (response,) = store_all(process.port, [radiograph(seed=8)])
    finally:
        process.stop()
    assert status_of(response) == 0xA700
    assert response.ErrorComment.startswith("store_unavailable")
