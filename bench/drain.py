"""Workers draining a pre-filled queue: one worker process (`make bench`) or a host's pool of
them (`python -m bench --host`), timed from the first job claimed to the last result."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis as redis_py

from bench.processes import RedisServer, WorkerProcess, wait_for_workers, wait_until
from bench.profile import Profiler
from bench.stack import CpuMeter, rss_mib, start_worker
from shared.config import Settings
from shared.imaging import PreprocessParams
from shared.schemas import Job
from shared.store import SyncStore, new_job
from shared.store.keys import Keys

# Where a pool's queue waits while its workers start (`held_queue`).
HELD_QUEUE_SUFFIX = ":held"


def drain_queue(redis: RedisServer, model_dir: Path, images: list[bytes], workdir: Path,
                batch_size: int, jobs: int, worker_decodes: bool = False, profile: bool = False,
                profile_gil: bool = False, name: str = "bench-worker",
                settings: dict[str, str] | None = None,
                pool: Sequence[dict[str, str]] = ({},)) -> dict:  # fmt: skip
    """Fill the queue with `jobs` first, then start the workers and time them from first claim
    to last result. The queue holds what the gateway stores (the upload and its model input),
    or with `worker_decodes` the upload alone. `settings`: every worker's environment on top;
    `pool`: one more environment per worker process (one worker by default).

    With `profile`, py-spy samples the (first) worker over the same span (from its
    announcement, model loaded, to the last result): `worker_profile` says what it spent it
    on. Sampling slows the worker, so a profiled drain's img/s is not the worker's figure.
    """
    store = bench_store(redis)
    job_ids = fill_queue(store, Settings(redis_url=redis.url), model_dir, images, jobs,
                         worker_decodes, name)  # fmt: skip
    workers = start_pool(redis, model_dir, workdir, batch_size, name, settings or {}, pool)
    try:
        return time_drain(redis, store, workers, job_ids, workdir / f"{name}-profile.txt",
                          profile, profile_gil)  # fmt: skip
    finally:
        stop_all(workers)


def bench_store(redis: RedisServer) -> SyncStore:
    settings = Settings(redis_url=redis.url)
    return SyncStore.from_url(redis.url, settings.key_prefix, settings.job_ttl_s)


def start_pool(redis: RedisServer, model_dir: Path, workdir: Path, batch_size: int, name: str,
               settings: dict[str, str],
               pool: Sequence[dict[str, str]]) -> list[WorkerProcess]:  # fmt: skip
    """One worker per environment in `pool` (each on top of `settings`), started behind a
    filled queue and returned once every one has its model loaded. A pool's queue is held back
    meanwhile, so that no worker drains it alone while the others start."""
    client = redis.client()
    client.config_resetstat()
    with held_queue(client, Settings().queue_name, hold=len(pool) > 1):
        workers = [
            start_worker(
                redis,
                model_dir,
                workdir,
                batch_size,
                name=name if len(pool) == 1 else f"{name}-{index}",
                **(settings | extra),
            )  # fmt: skip
            for index, extra in enumerate(pool)
        ]
        try:
            wait_for_workers(client, len(workers), timeout_s=180, processes=workers)
        except BaseException:
            stop_all(workers)
            raise
    return workers


def time_drain(redis: RedisServer, store: SyncStore, workers: Sequence[WorkerProcess],
               job_ids: list[str], profile_path: Path, profile: bool = False,
               profile_gil: bool = False) -> dict:  # fmt: skip
    """From the workers' first claim to their last result, until nothing is pending."""
    pids = [worker.process.pid for worker in workers if worker.process is not None]
    assert len(pids) == len(workers) and redis.process is not None  # all running now
    jobs = len(job_ids)
    rss_start = rss_mib(pids[0])
    rss = RssTrajectory(pids[0], jobs)
    profiler = Profiler(pids[0], profile_path, gil=profile_gil) if profile else None
    if profiler:
        profiler.start()
    with CpuMeter({"worker": pids, "redis": redis.process.pid}, load_generator=False) as meter:
        try:
            wait_until(lambda: rss.note(store.pending_count()), 3600, "the queue to drain")
        finally:  # py-spy must let go before the worker stops, or it reports the exit as an error
            breakdown = profiler.stop() if profiler else None
    rss_end = rss_mib(pids[0])
    stats = redis.client().info("commandstats")
    commands = sum(int(calls["calls"]) for calls in stats.values())
    records = [job for job in store.load_jobs(job_ids) if isinstance(job, Job)]
    summary = _drain_summary(records, commands, rss_start, rss_end, len(workers))
    summary["profiled"] = profile
    summary["cpu_ms_per_job"] = meter.per_request_ms(jobs)
    summary["worker_rss_mib_after_jobs"] = rss.samples
    if len(workers) > 1:
        summary["worker_processes"] = len(workers)
    return summary if breakdown is None else summary | {"worker_profile": breakdown}


def forget_jobs(redis: RedisServer, job_ids: Sequence[str], chunk: int = 1000) -> None:
    """Erase drained jobs and rewrite the append-only file, so that later runs on the same
    Redis meet it as small as a fresh one (and no rewrite of the drain's data lands on them)."""
    keys, client = Keys(Settings().key_prefix), redis.client()
    for start in range(0, len(job_ids), chunk):
        names = [key for job_id in job_ids[start : start + chunk]
                 for key in keys.all_for_job(job_id)]  # fmt: skip
        client.delete(*names)
    if redis.appendonly:
        client.bgrewriteaof()
        wait_until(lambda: not _rewriting(client), 600, "the append-only file's rewrite")


def _rewriting(client: redis_py.Redis) -> bool:
    persistence = client.info("persistence")
    return bool(persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"])


def fill_queue(store: SyncStore, settings: Settings, model_dir: Path, images: list[bytes],
               jobs: int, worker_decodes: bool, name: str) -> list[str]:  # fmt: skip
    """`jobs` jobs stored and queued as the gateway files them; their ids."""
    from celery import Celery

    from shared.queue import enqueue_predict, make_celery

    celery: Celery = make_celery(settings, "bench")
    submissions = gateway_submissions(images, settings, model_preprocessing(model_dir))
    if worker_decodes:
        submissions = [{"upload": submission["upload"]} for submission in submissions]
    job_ids = []
    for index in range(jobs):
        job = new_job(f"{name}-{index:06d}", store.ttl_s)
        # In the pending index, as the gateway files every job: each final write takes its
        # job out, so the drain is watched with one count instead of reading every record.
        store.save([job], {job.job_id: submissions[index % len(submissions)]}, pending=True)
        enqueue_predict(celery, settings, job.job_id)
        job_ids.append(job.job_id)
    return job_ids


@contextmanager
def held_queue(client: redis_py.Redis, queue: str, hold: bool = True) -> Iterator[None]:
    """The filled queue's list renamed aside while workers start, and back once they are up:
    the same messages, untouched, and the workers blocked on the list are woken by its return.
    Celery's Redis transport keeps a queue as one list named after it."""
    if hold:
        client.rename(queue, queue + HELD_QUEUE_SUFFIX)
    try:
        yield
    finally:
        if hold:
            client.rename(queue + HELD_QUEUE_SUFFIX, queue)


def stop_all(workers: Sequence[WorkerProcess]) -> None:
    """SIGTERM to every worker first, then the waits: their warm shutdowns side by side."""
    running = [worker.process for worker in workers
               if worker.process is not None and worker.process.poll() is None]  # fmt: skip
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        process.wait(30)


def model_preprocessing(model_dir: Path) -> PreprocessParams:
    from worker.model.artifact import read_card

    return read_card(model_dir).preprocessing


def gateway_submissions(
    images: list[bytes], settings: Settings, preprocessing: PreprocessParams
) -> list[dict[str, bytes]]:
    """The blobs the gateway stores for each image once a worker is live: the upload and the
    model input from its one decode (`gateway.submission.decode_upload`, called as is)."""
    from gateway.submission import decode_upload

    submissions = []
    for image in images:
        upload = asyncio.run(decode_upload(image, settings, preprocessing))
        assert upload.model_input is not None
        submissions.append({"upload": upload.stored, "input": upload.model_input})
    return submissions


class RssTrajectory:
    """The worker's RSS each time another fifth of the drain is done: flat after warm-up if
    nothing (graphs, buffers) is rebuilt or kept per call."""

    def __init__(self, pid: int, jobs: int, points: int = 5):
        self.pid, self.jobs, self.step = pid, jobs, max(1, jobs // points)
        self.samples: dict[str, float] = {}

    def note(self, jobs_left: int) -> bool:
        """Record a sample if a new step was reached; True once nothing is left."""
        done = (self.jobs - jobs_left) // self.step * self.step
        if done and str(done) not in self.samples:
            self.samples[str(done)] = rss_mib(self.pid)
        return jobs_left == 0


def _drain_summary(jobs: list[Job], commands: int, rss_start: float, rss_end: float,
                   workers: int = 1) -> dict:  # fmt: skip
    first = min(job.started_at for job in jobs if job.started_at)
    last = max(job.finished_at for job in jobs if job.finished_at)
    seconds = (last - first).total_seconds()
    # Each job records its share of its batch's model call, so the sum is the models' time;
    # a pool's share is per worker, each with a model of its own.
    model_s = sum(job.timings_ms.get("model", 0.0) for job in jobs) / 1000.0
    return {
        "worker_img_s": round(len(jobs) / seconds, 2),
        "model_busy_share": round(model_s / seconds / workers, 3),
        "worker_jobs": len(jobs),
        "worker_failed": sum(job.status.value == "failed" for job in jobs),
        "redis_commands_per_job": round(commands / len(jobs), 2),
        "worker_rss_start_mib": rss_start,
        "worker_rss_end_mib": rss_end,
    }
