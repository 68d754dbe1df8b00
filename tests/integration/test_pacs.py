"""Against a real PACS (Orthanc): a CR goes from Orthanc to the listener (C-STORE) or to the
gateway (STOW-RS), becomes a job on the real worker, and its SR and Secondary Capture come back
into the same study through `pneumo dicom-delivery` (C-STORE or STOW-RS), saying what the job
said, valid for dciodvfy. A PACS that cannot be reached shows in the job and in /metrics. No
patient identifier in a log or in any Redis value but the job's source header."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench import orthanc
from bench.orthanc import DeliveryProcess, OrthancProcess
from shared.dicom_results import part10
from tests.support.dicom_network import jobs_by_instance, related_body
from tests.support.pacs import (
    PATIENT_ID,
    PATIENT_TRACES,
    coded_answer,
    cr_instance,
    measured,
    read,
)
from tests.support.processes import (
    DicomListenerProcess,
    GatewayProcess,
    RedisServer,
    wait_until,
    worker_environment,
)
from tests.support.redis_values import values_by_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not orthanc.installed(), reason=orthanc.MISSING),
]
SR_STORAGE, SC_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Pacs:
    orthanc: OrthancProcess
    listener: DicomListenerProcess
    gateway: GatewayProcess
    environment: dict[str, str]
    logs: Path
    delivery: DeliveryProcess | None = None
    delivery_settings: dict[str, str] | None = None

    def deliver_with(self, **settings: str) -> None:
        """`pneumo dicom-delivery` with these settings running, and no other: each start costs
        seconds, so tests that share settings share the process."""
        if self.delivery is not None and settings == self.delivery_settings:
            return
        self.stop_delivery()
        environment = {**self.environment, "PNEUMO_DICOM_DESTINATION": "",
                       "PNEUMO_DICOMWEB_DESTINATION": "", **settings}  # fmt: skip
        log_path = self.logs / f"delivery-{len(list(self.logs.glob('delivery-*')))}.log"
        self.delivery = DeliveryProcess(environment, log_path).__enter__()
        self.delivery_settings = settings

    def stop_delivery(self) -> None:
        if self.delivery is not None:
            self.delivery.__exit__()
            self.delivery = None

    def deliver_by_c_store(self) -> None:
        # Two quick tries, so the unreachable-PACS test gives up in about a second.
        destination = self.environment["PNEUMO_DICOM_DESTINATION"]
        self.deliver_with(PNEUMO_DICOM_DESTINATION=destination, PNEUMO_DELIVERY_ATTEMPTS="2",
                          PNEUMO_DELIVERY_BACKOFF_S="0.2")  # fmt: skip

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs.glob("*.log"))


@pytest.fixture(scope="module")
def pacs(
    redis_server: RedisServer, tiny_model_dir: Path, worker, tmp_path_factory
) -> Iterator[Pacs]:
    logs = tmp_path_factory.mktemp("pacs-logs")
    environment = worker_environment(redis_server.url, tiny_model_dir,
                                     PNEUMO_DICOM_ALLOWED_AETS=orthanc.AE_TITLE)  # fmt: skip
    listener = DicomListenerProcess(environment, logs / "listener.log")
    pacs_server = OrthancProcess(logs.parent / "orthanc", {"pneumo": ("PNEUMO", listener.port)})
    # The intake queues a delivery for DICOM jobs only where a destination is configured.
    environment["PNEUMO_DICOM_DESTINATION"] = (
        f"{orthanc.AE_TITLE}@127.0.0.1:{pacs_server.dicom_port}"
    )
    pacs = Pacs(pacs_server, listener, GatewayProcess(environment, logs / "gateway.log"),
                environment, logs)  # fmt: skip
    pacs.deliver_by_c_store()  # starts while the others do
    pacs_server.start()
    listener.start()
    pacs.gateway.start()
    yield pacs
    pacs.stop_delivery()
    for process in (pacs.gateway, listener, pacs_server):
        process.stop()


def film(seed: int) -> np.ndarray:
    rows, columns = 256, 208
    generator = np.random.default_rng(seed)
    ramp = np.linspace(300, 3500, rows)[:, None] * np.ones((1, columns))
    return (ramp + generator.normal(0, 60, (rows, columns))).clip(0, 4095)


def delivered(pacs: Pacs, study_uid: str, count: int, timeout_s: float = 40) -> list[dict]:
    """The study's instances once Orthanc holds `count`: the source (where it was stored
    there) plus the SR and the SC."""
    found: dict[str, list[dict]] = {}

    def arrived() -> bool:
        found["instances"] = pacs.orthanc.study_instances(study_uid)
        return len(found["instances"]) >= count

    wait_until(arrived, timeout_s, f"{count} instances in the study")
    return found["instances"]


def job_of(pacs: Pacs, redis_server: RedisServer, sop_instance_uid: str) -> dict:
    job_id = jobs_by_instance(redis_server.client())[sop_instance_uid]
    return httpx.get(f"{pacs.gateway.url}/v1/jobs/{job_id}", timeout=10).json()


def check_results(pacs: Pacs, instances: list[dict], job: dict, source, tmp_path: Path) -> None:
    """The SR and the SC in Orthanc say what the job said, in the film's study and size."""
    by_class = {item["SOPClassUID"]: item for item in instances}
    report = read(pacs.orthanc.file(by_class[SR_STORAGE]["ID"]))
    capture = read(pacs.orthanc.file(by_class[SC_STORAGE]["ID"]))
    result = job["result"]
    answer = "Present" if result["label"] == "PNEUMONIA" else "Absent"
    assert coded_answer(report, "233604007") == answer
    assert measured(report, "122157") == pytest.approx(result["probability"], abs=1e-6)
    assert measured(report, "122411") == pytest.approx(result["threshold"], abs=1e-6)
    assert result["model"]["sha256"] in report.to_json()
    assert report.VerificationFlag == "UNVERIFIED"
    for made in (report, capture):
        assert made.StudyInstanceUID == source.StudyInstanceUID and made.PatientID == PATIENT_ID
    assert (capture.Rows, capture.Columns) == (source.Rows, source.Columns)
    # The same instance as the gateway serves: one result, however it is fetched.
    served = httpx.get(f"{pacs.gateway.url}/v1/jobs/{job['job_id']}/sr.dcm", timeout=30)
    assert read(served.content).SOPInstanceUID == report.SOPInstanceUID
    if shutil.which("dciodvfy"):
        for name, made in (("sr.dcm", report), ("sc.dcm", capture)):
            made.save_as(tmp_path / name, enforce_file_format=True)
            checked = subprocess.run(["dciodvfy", str(tmp_path / name)], capture_output=True,
                                     text=True, timeout=60)  # fmt: skip
            assert not [line for line in checked.stderr.splitlines() if line.startswith("Error")]


def stow(pacs: Pacs, source) -> httpx.Response:
    body, content_type = related_body([("application/dicom", part10(source))])
    return httpx.post(f"{pacs.gateway.url}/dicomweb/studies", content=body,
                      headers={"Content-Type": content_type}, timeout=30)  # fmt: skip


def check_privacy(pacs: Pacs, redis_server: RedisServer, worker) -> None:
    for key, stored in values_by_key(redis_server.client()).items():
        if any(trace in value for trace in PATIENT_TRACES for value in (key, *stored)):
            assert key.decode().endswith(":dicom_header"), key
    logged = pacs.log_text() + worker.log_text()
    assert not any(trace.decode() in logged for trace in PATIENT_TRACES)


def test_orthanc_stores_to_the_listener_and_gets_sr_and_sc_back(
    pacs: Pacs, redis_server: RedisServer, worker, tmp_path: Path
) -> None:
    source = cr_instance(film(1))
    pacs.deliver_by_c_store()
    pacs.orthanc.send("pneumo", pacs.orthanc.upload(part10(source))["ID"])
    instances = delivered(pacs, source.StudyInstanceUID, 3)
    job = job_of(pacs, redis_server, source.SOPInstanceUID)
    assert job["status"] == "succeeded"
    assert job["delivery"] == {"state": "delivered", "attempts": 1, "last_error": None}
    check_results(pacs, instances, job, source, tmp_path)
    check_privacy(pacs, redis_server, worker)
    # Deleting the job takes the identifiers with it: no more DICOM results from the service.
    assert httpx.delete(f"{pacs.gateway.url}/v1/jobs/{job['job_id']}").status_code == 204
    gone = httpx.get(f"{pacs.gateway.url}/v1/jobs/{job['job_id']}/sr.dcm", timeout=10)
    assert gone.status_code == 404
    assert not list(redis_server.client().scan_iter(f"pneumo:*{job['job_id']}*"))


def test_a_pacs_that_cannot_be_reached_shows_in_the_job_and_the_metrics(
    pacs: Pacs, redis_server: RedisServer
) -> None:
    source = cr_instance(film(3))
    pacs.deliver_by_c_store()
    pacs.orthanc.stop()  # the PACS away; the film comes in by STOW-RS meanwhile
    try:
        assert stow(pacs, source).status_code == 200
        job: dict = {}

        def given_up() -> bool:
            job.update(job_of(pacs, redis_server, source.SOPInstanceUID))
            return (job.get("delivery") or {}).get("state") == "failed"

        wait_until(given_up, 40, "the delivery to give up")
    finally:
        pacs.orthanc.start()
    assert job["delivery"]["attempts"] == 2
    assert f"No association with {orthanc.AE_TITLE}" in job["delivery"]["last_error"]
    metrics = httpx.get(f"{pacs.gateway.url}/metrics", timeout=10).text
    counts = {line.split("{")[1].split("}")[0]: float(line.split()[-1])
              for line in metrics.splitlines()
              if line.startswith("pneumo_dicom_deliveries_total{")}  # fmt: skip
    assert counts['outcome="failed"'] >= 1 and counts['outcome="retried"'] >= 1


def test_stow_rs_in_and_stow_rs_back(
    pacs: Pacs, redis_server: RedisServer, worker, tmp_path: Path
) -> None:
    source = cr_instance(film(2))
    pacs.deliver_with(PNEUMO_DICOMWEB_DESTINATION=pacs.orthanc.dicomweb_url)
    assert stow(pacs, source).status_code == 200
    instances = delivered(pacs, source.StudyInstanceUID, 2)
    assert {item["SOPClassUID"] for item in instances} == {SR_STORAGE, SC_STORAGE}
    job = job_of(pacs, redis_server, source.SOPInstanceUID)
    assert job["delivery"]["state"] == "delivered"
    check_results(pacs, instances, job, source, tmp_path)
    check_privacy(pacs, redis_server, worker)


def test_a_job_from_an_upload_has_no_dicom_results(pacs: Pacs) -> None:
    image = io.BytesIO()
    Image.fromarray((film(4) / 16).astype(np.uint8)).save(image, format="PNG")
    created = httpx.post(f"{pacs.gateway.url}/v1/jobs", files={"file": ("chest.png",
                         image.getvalue(), "image/png")}, timeout=30).json()  # fmt: skip
    url = f"{pacs.gateway.url}/v1/jobs/{created['job_id']}"
    job = httpx.get(url, params={"wait": 30}, timeout=40).json()
    assert job["status"] == "succeeded" and job["delivery"] is None
    for name in ("sr.dcm", "sc.dcm"):
        answer = httpx.get(f"{url}/{name}", timeout=10)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "no_dicom_results"
