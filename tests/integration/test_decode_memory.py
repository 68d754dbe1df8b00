"""Eight 7,000 px 16-bit and RGBA films at once leave the real gateway and the real worker
within their decode memory budget (`PNEUMO_DECODE_MEMORY_MB`), measured from /proc, and every
upload is answered 202 or a clear refusal (issue 22: four such films once took a gateway from
6.0 to 11.7 GB)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from shared.queue import enqueue_predict, make_celery
from shared.store import SyncStore, new_job
from tests.support.large_images import rgba_png, sixteen_bit_png
from tests.support.processes import (
    GatewayProcess,
    RedisServer,
    WorkerProcess,
    wait_for_workers,
    wait_until,
    worker_environment,
)

pytestmark = pytest.mark.slow
BUDGET_MB = 512  # the shipped default, sized for a 1 GB gateway container
PREFIX = QUEUE = "decode-memory"  # apart from the session worker's jobs
GENEROUS_S = 300


@pytest.fixture(scope="module")
def films() -> list[bytes]:
    return [maker(seed=seed) for seed in range(4) for maker in (sixteen_bit_png, rgba_png)]


@pytest.fixture(scope="module")
def service(
    redis_server: RedisServer, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, WorkerProcess]]:
    logs = tmp_path_factory.mktemp("decode-memory-logs")
    environment = worker_environment(
        redis_server.url, tiny_model_dir, PNEUMO_KEY_PREFIX=PREFIX, PNEUMO_QUEUE_NAME=QUEUE,
        PNEUMO_DECODE_MEMORY_MB=str(BUDGET_MB), PNEUMO_INTAKE_THREADS="8",
        PNEUMO_DECODE_WAIT_S="60",
    )  # fmt: skip
    worker = WorkerProcess(environment, logs / "worker.log", name="decode-memory").start()
    gateway = None
    try:
        wait_for_workers(redis_server.client(), 1, processes=[worker], prefix=PREFIX)
        gateway = GatewayProcess(environment, logs / "gateway.log").start()
        yield gateway, worker
    finally:
        if gateway is not None:
            gateway.stop()
        worker.stop()


def memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def reset_peak(pid: int) -> int:
    """Start VmHWM again from the current RSS (Linux clear_refs); returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory(pid, "VmRSS")


def peak_growth(pid: int, before: int) -> int:
    return memory(pid, "VmHWM") - before


def test_concurrent_huge_uploads_stay_within_the_gateways_budget(service, films) -> None:
    gateway, _ = service
    assert gateway.process is not None
    before = reset_peak(gateway.process.pid)

    def submit(film: bytes) -> httpx.Response:
        files = {"file": ("film.png", film, "image/png")}
        return httpx.post(gateway.url + "/v1/jobs", files=files, timeout=GENEROUS_S)

    with ThreadPoolExecutor(len(films)) as pool:
        answers = list(pool.map(submit, films))
    growth = peak_growth(gateway.process.pid, before)
    print(f"gateway peak RSS growth for {len(films)} films: {growth / 2**20:.0f} MB")
    for answer in answers:
        assert answer.status_code == 202 or (
            answer.status_code in (413, 503) and answer.json()["error"]["code"]
        ), answer.text
    assert any(answer.status_code == 202 for answer in answers)
    assert 0 < growth < BUDGET_MB * 2**20


def test_a_worker_decoding_huge_uploads_stays_within_its_budget(
    service, films, redis_server: RedisServer
) -> None:
    """Jobs queued without the gateway's model input, as while no worker had announced its
    preprocessing: the worker decodes all eight itself, in eight threads."""
    _, worker = service
    assert worker.process is not None
    store = SyncStore.from_url(redis_server.url, PREFIX, 3600)
    jobs = [new_job(str(uuid.uuid4()), 3600) for _ in films]
    store.save(jobs, {job.job_id: {"upload": film} for job, film in zip(jobs, films, strict=True)})
    before = reset_peak(worker.process.pid)
    settings = Settings(redis_url=redis_server.url, key_prefix=PREFIX, queue_name=QUEUE)
    celery = make_celery(settings)
    for job in jobs:
        enqueue_predict(celery, settings, job.job_id)

    def all_final() -> bool:
        loaded = store.load_jobs([job.job_id for job in jobs])
        return all(job is not None and job.status.is_final for job in loaded)

    wait_until(all_final, GENEROUS_S, "the worker to finish the eight films")
    growth = peak_growth(worker.process.pid, before)
    print(f"worker peak RSS growth decoding {len(films)} films: {growth / 2**20:.0f} MB")
    finished = store.load_jobs([job.job_id for job in jobs])
    assert all(job is not None and job.status.value == "succeeded" for job in finished)
    assert 0 < growth < BUDGET_MB * 2**20
