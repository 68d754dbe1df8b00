"""Blobs in object storage (`PNEUMO_BLOB_STORE=s3`), against a real SeaweedFS process.

One stack for the module: its own redis-server, a `weed server -s3` on free ports
(`bench.object_store`), two worker processes and the gateway in-process, all with blobs in
the bucket. The last test kills a worker and restarts the object store while 200 jobs run:
every accepted job ends succeeded, once.
"""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import obstore
import pytest
from fastapi.testclient import TestClient

from bench.object_store import SeaweedServer
from shared.blobs import S3Blobs, S3Location, open_s3
from shared.config import Settings
from shared.store import BLOB_NAMES, SyncStore, new_job
from tests.support.dicom_network import radiograph
from tests.support.dicoms import PATIENT_TRACES
from tests.support.faults import Tally, finish_and_tally, freeze_mid_batch, paused, records
from tests.support.images import phantom_png
from tests.support.processes import (
    RedisServer,
    WorkerProcess,
    free_port,
    wait_for_workers,
    wait_until,
    worker_environment,
)
from tests.support.redis_values import values_by_key

pytestmark = pytest.mark.slow

JOBS = 200
VISIBILITY_S = 10  # as test_faults: a killed worker's jobs come back within the test
IMAGES = [phantom_png(seed=seed, size=96) for seed in range(8)]
WORKER_SETTINGS = {
    "PNEUMO_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
    "PNEUMO_BATCH_SOFT_TIME_LIMIT_S": "5",
    "PNEUMO_BATCH_HARD_TIME_LIMIT_S": "8",
    "PNEUMO_BATCH_SIZE": "8",
    "PNEUMO_S3_TIMEOUT_S": "3",
}


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.kill()  # its data is the test's: no need to wait for a clean shutdown


@pytest.fixture(scope="module")
def s3_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("s3-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_workers(
    s3_redis: RedisServer, object_store: SeaweedServer, tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[WorkerProcess]]:  # fmt: skip
    environment = worker_environment(
        s3_redis.url, tiny_model_dir, **WORKER_SETTINGS, **object_store.environment()
    )
    logs = tmp_path_factory.mktemp("s3-logs")
    workers = [WorkerProcess(environment, logs / f"{name}.log", name=name).start()
               for name in ("s3-a", "s3-b")]  # fmt: skip
    try:
        wait_for_workers(s3_redis.client(), 2, timeout_s=180, processes=workers)
        yield workers
    finally:
        for worker in workers:  # their Redis and bucket are the test's: no clean stop needed
            worker.kill()


def s3_settings(redis_url: str, model_dir: Path, endpoint_url: str) -> Settings:
    return Settings(
        redis_url=redis_url, model_dir=model_dir, heartbeat_s=1, visibility_timeout_s=VISIBILITY_S,
        batch_soft_time_limit_s=5.0, batch_hard_time_limit_s=8.0, blob_store="s3",
        s3_endpoint_url=endpoint_url, s3_bucket="pneumo", s3_timeout_s=3,
    )  # fmt: skip


@pytest.fixture()
def s3_api(
    s3_redis: RedisServer, object_store: SeaweedServer, s3_workers: list[WorkerProcess],
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:  # fmt: skip
    from gateway.app import create_app

    for name, value in object_store.environment().items():
        if name.startswith("AWS_"):  # credentials the standard way, read by the S3 client
            monkeypatch.setenv(name, value)
    settings = s3_settings(s3_redis.url, tiny_model_dir, object_store.endpoint_url)
    with TestClient(create_app(settings)) as client:
        yield client


def object_names(object_store: SeaweedServer, job_id: str) -> set[str]:
    location = S3Location(object_store.endpoint_url, object_store.bucket, "us-east-1", "pneumo")
    listed = obstore.list(open_s3(location), prefix=f"pneumo/{job_id}/").collect()
    return {entry["path"].rsplit("/", 1)[-1] for entry in listed}


def submit(api: TestClient, index: int) -> tuple[int, dict]:
    response = api.post("/v1/jobs", files={"file": ("x.png", IMAGES[index % len(IMAGES)])})
    return response.status_code, response.json()


def finished(api: TestClient, job_id: str) -> dict:
    job = api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    return job


def test_a_jobs_blobs_are_objects_and_delete_erases_them(
    s3_api: TestClient, s3_redis: RedisServer, object_store: SeaweedServer
) -> None:
    status, body = submit(s3_api, 0)
    assert status == 202, body
    job_id = body["job_id"]
    # Before a worker is done: the upload and what the gateway made of it are objects.
    finished(s3_api, job_id)
    overlay = s3_api.get(f"/v1/jobs/{job_id}/overlay.png")
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
    assert s3_api.get(f"/v1/jobs/{job_id}/input.png").status_code == 200
    names = object_names(object_store, job_id)
    # The upload went with the final write; the map, input, film copy and picture stay.
    assert {"cam", "input", "display", "placement", "overlay"} <= names
    assert "upload" not in names
    client = s3_redis.client()
    assert not list(client.scan_iter(f"pneumo:blob:{job_id}:*"))  # no blob bytes in Redis
    assert client.zscore("pneumo:blob-expiry", job_id) is not None
    assert s3_api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert object_names(object_store, job_id) == set()
    assert client.zscore("pneumo:blob-expiry", job_id) is None
    assert s3_api.get(f"/v1/jobs/{job_id}").status_code == 404


def test_the_seed_route_batches_and_readiness_work_with_objects(
    s3_api: TestClient, object_store: SeaweedServer
) -> None:
    ready = s3_api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["object_store"] == "ok"
    predicted = s3_api.post("/predict", files={"file": ("x.png", IMAGES[2])})
    assert predicted.status_code == 200, predicted.text
    gradcam = s3_api.get("/" + predicted.json()["gradcam_image"])
    assert gradcam.status_code == 200 and gradcam.content.startswith(b"\x89PNG")
    files = [("files", (f"{index}.png", IMAGES[index])) for index in (3, 4)]
    batch = s3_api.post("/v1/batches", files=files)
    assert batch.status_code == 202, batch.text
    for job_id in batch.json()["job_ids"]:
        finished(s3_api, job_id)
        assert "cam" in object_names(object_store, job_id)


def test_a_dicom_instances_header_is_an_object_and_its_results_build(
    s3_api: TestClient, s3_redis: RedisServer, object_store: SeaweedServer
) -> None:
    """STOW-RS with objects: the source header (the patient's identifiers) lives in the bucket,
    nowhere in Redis, and the SR is built from it."""
    instance = io.BytesIO()
    radiograph(seed=21).save_as(instance, enforce_file_format=True)
    boundary = "pneumo-s3-test"
    body = (b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n--%s--\r\n"
            % (boundary.encode(), instance.getvalue(), boundary.encode()))  # fmt: skip
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    answer = s3_api.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200, answer.text
    job_url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    job_id = finished(s3_api, job_url.rsplit("/", 1)[-1])["job_id"]
    assert "dicom_header" in object_names(object_store, job_id)
    for stored_values in values_by_key(s3_redis.client()).values():
        assert not any(trace in value for trace in PATIENT_TRACES for value in stored_values)
    report = s3_api.get(f"/v1/jobs/{job_id}/sr.dcm")
    assert report.status_code == 200 and report.content[128:132] == b"DICM"


def test_pictures_redirect_to_presigned_urls_for_the_public_endpoint(
    s3_api: TestClient, s3_redis: RedisServer, object_store: SeaweedServer, tiny_model_dir: Path
) -> None:
    from gateway.app import create_app

    job_id = submit(s3_api, 5)[1]["job_id"]
    finished(s3_api, job_id)
    base = s3_settings(s3_redis.url, tiny_model_dir, object_store.endpoint_url)
    public = "https://objects.example.org"  # what clients reach, not what the services use
    settings = base.model_copy(update={"s3_presign": True, "s3_public_endpoint_url": public})
    with TestClient(create_app(settings)) as api:
        reply = api.get(f"/v1/jobs/{job_id}/heatmap.png", follow_redirects=False)
    assert reply.status_code == 307, reply.text
    location = reply.headers["location"]
    assert location.startswith(f"{public}/pneumo/pneumo/{job_id}/heatmap?")
    assert "X-Amz-Signature=" in location
    # Signed for its host: the same URL aimed at another host is refused.
    assert httpx.get(location.replace(public, object_store.endpoint_url)).status_code == 403
    # Signed for the endpoint the test reaches: the object store itself serves the picture.
    with TestClient(create_app(base.model_copy(update={"s3_presign": True}))) as api:
        direct = api.get(f"/v1/jobs/{job_id}/heatmap.png", follow_redirects=False)
    picture = httpx.get(direct.headers["location"])
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


def test_objects_that_vanished_answer_blob_missing(
    s3_api: TestClient, object_store: SeaweedServer
) -> None:
    job_id = submit(s3_api, 1)[1]["job_id"]
    finished(s3_api, job_id)
    location = S3Location(object_store.endpoint_url, object_store.bucket, "us-east-1", "pneumo")
    S3Blobs(location).delete([job_id], BLOB_NAMES)  # removed behind the service's back
    response = s3_api.get(f"/v1/jobs/{job_id}/heatmap.png")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "blob_missing"


def test_expired_jobs_objects_are_reaped(
    s3_redis: RedisServer, object_store: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in object_store.environment().items():
        monkeypatch.setenv(name, value)
    location = S3Location(object_store.endpoint_url, object_store.bucket, "us-east-1", "pneumo")
    store = SyncStore(s3_redis.client(), "pneumo", ttl_s=1, objects=S3Blobs(location))
    job = new_job("reaped-" + str(time.time_ns()), ttl_s=1)
    store.save([job], {job.job_id: {"upload": b"x" * 100, "cam": b"y" * 10}})
    assert object_names(object_store, job.job_id) == {"upload", "cam"}
    wait_until(lambda: s3_redis.client().get(f"pneumo:job:{job.job_id}") is None, 5, "expiry")
    assert store.reap_expired_blobs() >= 1
    assert object_names(object_store, job.job_id) == set()


def test_object_store_down_submissions_get_503_and_nothing_is_stored(
    s3_redis: RedisServer, s3_workers: list[WorkerProcess], tiny_model_dir: Path,
    object_store: SeaweedServer, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from gateway.app import create_app

    for name, value in object_store.environment().items():
        monkeypatch.setenv(name, value)
    nobody = f"http://127.0.0.1:{free_port()}"  # an object store that is down
    client = s3_redis.client()
    before = (set(client.scan_iter("pneumo:job:*")), client.zcard("pneumo:pending"))
    with TestClient(create_app(s3_settings(s3_redis.url, tiny_model_dir, nobody))) as api:
        response = api.post("/v1/jobs", files={"file": ("x.png", IMAGES[0])},
                            headers={"Idempotency-Key": "down-1"})  # fmt: skip
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "blob_store_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["object_store"] == "unreachable"
    after = (set(client.scan_iter("pneumo:job:*")), client.zcard("pneumo:pending"))
    assert after == before
    assert not list(client.scan_iter("pneumo:idem:*"))  # the key was let go, to use again


def test_sigkill_a_worker_and_restart_the_object_store_mid_run(
    s3_api: TestClient, s3_redis: RedisServer, s3_workers: list[WorkerProcess],
    object_store: SeaweedServer,
) -> None:  # fmt: skip
    """A batch whose objects cannot be written is handed back, not failed; the killed
    worker's jobs come back after the visibility timeout."""
    client = s3_redis.client()
    victim, survivor = s3_workers
    with paused([survivor]):  # the victim alone takes the backlog, so it is surely caught
        with paused([victim]):
            replies = [submit(s3_api, index) for index in range(JOBS)]
        assert [status for status, _ in replies] == [202] * JOBS
        job_ids = [body["job_id"] for _, body in replies]
        held = freeze_mid_batch(victim, client, job_ids)
        victim.kill(signal.SIGKILL)
        object_store.kill()  # crashed too, while the backlog waits for the survivor
    # The survivor's first batches meet no object store; it comes back with its objects.
    restart = threading.Thread(target=restart_after, args=(object_store, 1.0))
    restart.start()
    result = finish_and_tally(client, job_ids, timeout_s=VISIBILITY_S + 120)
    restart.join()
    assert result == Tally(JOBS, JOBS, 0, 0, 0)
    attempts = [job["attempts"] for job in records(client, sorted(held))]
    handed_back = survivor.log_text().count("BlobStoreUnavailable")
    print(f"the killed worker held {len(held)} claimed jobs; their deliveries: {attempts}; "
          f"batches handed back while the object store was down: {handed_back}")  # fmt: skip
    assert handed_back > 0, "the object store came back before any batch met it"
    assert all(object_names(object_store, job_id) >= {"cam"} for job_id in job_ids[:5])


def restart_after(server: SeaweedServer, down_s: float) -> None:
    time.sleep(down_s)
    server.start()  # ready once its volumes are loaded again
