"""Redis memory per job, and end to end at one concurrency, with blobs in Redis and with blobs
in object storage (a local SeaweedFS), in one run on the same machine:

    python -m bench.blob_memory [--jobs 200] [--concurrency 32] [--e2e-jobs 256]

For each backend: a fresh redis-server (no AOF), the demo model's worker, the gateway as
deployed (uvicorn). `queued`: Redis's used_memory grown per job while `--jobs` jobs wait (no
worker yet: record, queue message, pending entry and, with `redis`, the upload, model input,
display copy and placement). `finished`: per job once they are all final (the upload dropped,
the map added), and `with_overlay` once each job's overlay.png was asked for (kept where the
blobs live). Then `make bench`'s closed loop (`bench.load`) at `--concurrency` clients. A
100,000-job day at the default 24 h TTL holds 100,000 finished jobs: the figure extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.load import run_load
from bench.measure import benchmark_jpegs
from bench.object_store import SeaweedServer
from bench.processes import RedisServer, UvicornProcess, wait_for_workers, wait_until
from bench.run import DEFAULT_MODEL_DIR
from bench.stack import gateway_environment, start_worker

DAY_JOBS = 100_000
FILMS = 16  # distinct films, 1,000-2,000 px JPEGs, cycled


def used_memory(redis: RedisServer) -> int:
    return int(redis.client().info("memory")["used_memory"])


def all_final(redis: RedisServer, job_ids: list[str]) -> bool:
    records = redis.client().mget([f"pneumo:job:{job_id}" for job_id in job_ids])
    statuses = [json.loads(record)["status"] if record else None for record in records]
    return all(status in ("succeeded", "failed") for status in statuses)


def measure_backend(backend: str, jobs: int, concurrency: int, e2e_jobs: int,
                    workdir: Path) -> dict[str, float]:  # fmt: skip
    images = benchmark_jpegs(FILMS)
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(workdir / f"redis-{backend}", appendonly=False))
        extra: dict[str, str] = {}
        if backend == "s3":
            extra = stack.enter_context(SeaweedServer(workdir / "seaweedfs")).environment()
            os.environ.update({k: v for k, v in extra.items() if k.startswith("AWS_")})
        environment = gateway_environment(redis, DEFAULT_MODEL_DIR) | extra
        log_path = workdir / f"gateway-{backend}.log"
        gateway = UvicornProcess("gateway.app:create_app", environment, log_path, factory=True)
        gateway.start()
        stack.callback(gateway.stop)
        before = used_memory(redis)
        with httpx.Client(base_url=gateway.url, timeout=60) as client:
            replies = [client.post("/v1/jobs", files={"file": ("f.jpg", images[i % FILMS])})
                       for i in range(jobs)]  # fmt: skip
            job_ids = [reply.json()["job_id"] for reply in replies]
            queued = (used_memory(redis) - before) / jobs
            worker = start_worker(
                redis, DEFAULT_MODEL_DIR, workdir, 16, name=f"w-{backend}", **extra
            )
            stack.callback(worker.stop)
            wait_for_workers(redis.client(), 1, timeout_s=300, processes=[worker])
            wait_until(lambda: all_final(redis, job_ids), 600, "the queued jobs")
            time.sleep(1.5)  # the gateway's picture of the worker's model settles
            finished = (used_memory(redis) - before) / jobs
            for job_id in job_ids:
                assert client.get(f"/v1/jobs/{job_id}/overlay.png").status_code == 200
            with_overlay = (used_memory(redis) - before) / jobs
        e2e = run_load(gateway.url, [images[i % FILMS] for i in range(e2e_jobs)], concurrency)
    return {
        "redis_bytes_per_queued_job": round(queued),
        "redis_bytes_per_finished_job": round(finished),
        "redis_bytes_per_finished_job_with_overlay": round(with_overlay),
        "redis_mb_for_a_100k_job_day": round(with_overlay * DAY_JOBS / 1e6, 1),
        **{f"e2e_{key}": value for key, value in e2e.summary().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--e2e-jobs", type=int, default=256)
    arguments = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for backend in ("redis", "s3"):
            workdir = Path(directory) / backend
            workdir.mkdir()
            results[backend] = measure_backend(
                backend, arguments.jobs, arguments.concurrency, arguments.e2e_jobs, workdir
            )
            print(backend, json.dumps(results[backend]), flush=True)
    print(json.dumps({"cpus": os.cpu_count(), **results}, indent=1))


if __name__ == "__main__":
    main()
