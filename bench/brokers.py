"""`python -m bench.brokers`: the same drain through each broker, Redis and RabbitMQ, in one run.

Each round, for each broker in turn: a fresh Redis for the job records (which is also the
broker in the Redis case) and, for RabbitMQ, a node of its own; `jobs` jobs stored and queued
as the gateway files them; then one worker started and timed from its first claim to its last
result. The brokers take turns round by round, so a slow minute on a shared machine falls on
both. Each drain also counts what a job costs (docs/scaling.md sizes Redis and the broker from
these): Redis commands and bytes in and out, RabbitMQ bytes, CPU of each process. Then, with
the worker still up, `http_jobs` jobs go through the gateway (submitted, long-polled to the
end, in process): the same counts for a job's whole life, gateway included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis as redis_py

from bench.drain import fill_queue
from bench.measure import benchmark_jpegs
from bench.processes import (
    RedisServer,
    WorkerProcess,
    wait_for_workers,
    wait_until,
    worker_environment,
)
from bench.rabbitmq import RabbitMQServer
from bench.stack import cpu_seconds
from shared.config import Settings
from shared.schemas import Job
from shared.store import SyncStore

BROKERS = ("redis", "rabbitmq")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"


def redis_counts(client: redis_py.Redis) -> dict[str, int]:
    """Commands by name and network bytes since the last CONFIG RESETSTAT."""
    stats = client.info("stats")
    commands = {name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in client.info("commandstats").items()}  # fmt: skip
    return {"commands": sum(commands.values()), "bytes_in": int(stats["total_net_input_bytes"]),
            "bytes_out": int(stats["total_net_output_bytes"])} | {
        f"cmd:{name}": calls for name, calls in commands.items()
    }  # fmt: skip


def redis_per_job(counts: dict[str, int], jobs: int) -> dict:
    by_command = {name.removeprefix("cmd:"): round(calls / jobs, 2)
                  for name, calls in counts.items() if name.startswith("cmd:")}  # fmt: skip
    return {
        "redis_commands_per_job": round(counts["commands"] / jobs, 2),
        "redis_bytes_per_job": round((counts["bytes_in"] + counts["bytes_out"]) / jobs),
        "redis_commands": dict(sorted(by_command.items(), key=lambda item: -item[1])),
    }


def group_cpu_seconds(group: int) -> float:
    """CPU time of every process in a process group (RabbitMQ: its shell, beam, epmd helpers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                total += cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):  # exited while listed
            continue
    return total


@contextmanager
def broker_stack(kind: str, directory: Path) -> Iterator[tuple[RedisServer, RabbitMQServer | None]]:
    with RedisServer(directory / "records") as records:
        if kind == "redis":
            yield records, None
            return
        with RabbitMQServer(directory / "rabbitmq") as broker:
            yield records, broker


def drain(kind: str, directory: Path, model_dir: Path, images: list[bytes], jobs: int,
          http_jobs: int, batch_size: int) -> dict:  # fmt: skip
    with broker_stack(kind, directory) as (records, broker):
        settings = Settings(redis_url=records.url, broker_url=broker.url if broker else None,
                            model_dir=model_dir)  # fmt: skip
        store = SyncStore.from_url(records.url, settings.key_prefix, settings.job_ttl_s)
        job_ids = fill_queue(store, settings, model_dir, images, jobs, worker_decodes=False,
                             name=kind)  # fmt: skip
        client = records.client()
        client.config_resetstat()
        environment = worker_environment(
            records.url, model_dir, PNEUMO_BATCH_SIZE=str(batch_size), PNEUMO_BATCH_WAIT_MS="10",
            **({"PNEUMO_BROKER_URL": broker.url} if broker else {}),
        )  # fmt: skip
        worker = WorkerProcess(environment, directory / "worker.log", name=f"drain-{kind}")
        # Before the worker connects: its connection's bytes are then all the drain's.
        broker_bytes_before = broker.connection_bytes() if broker else 0
        worker.start()
        try:
            wait_for_workers(client, 1, timeout_s=300, processes=[worker])
            result = timed_drain(kind, store, client, worker, records, broker, job_ids)
            if broker is not None:
                result["rabbitmq_bytes_per_job"] = round(
                    (broker.connection_bytes() - broker_bytes_before) / jobs
                )
            if http_jobs:
                result["through_http"] = through_http(
                    settings, client, broker, images, http_jobs,
                    lambda: processes_cpu(worker, records, broker),
                )  # fmt: skip
        finally:
            worker.stop()
    return result


def processes_cpu(worker: WorkerProcess, records: RedisServer,
                  broker: RabbitMQServer | None) -> dict[str, float]:  # fmt: skip
    assert worker.process is not None and records.process is not None
    spent = {"worker": cpu_seconds(worker.process.pid), "redis": cpu_seconds(records.process.pid)}
    if broker is not None and broker.process is not None:
        spent["rabbitmq"] = group_cpu_seconds(broker.process.pid)
    return spent


def timed_drain(kind: str, store: SyncStore, client: redis_py.Redis, worker: WorkerProcess,
                records: RedisServer, broker: RabbitMQServer | None,
                job_ids: list[str]) -> dict:  # fmt: skip
    # From the worker's announcement (model loaded): its start-up is no job's cost. It may
    # have claimed its first batch by then; with thousands of jobs that is noise.
    cpu_before = processes_cpu(worker, records, broker)
    wait_until(lambda: store.pending_count() == 0, 3600, f"the {kind} queue to drain")
    cpu_after = processes_cpu(worker, records, broker)
    counts = redis_counts(client)
    done = [job for job in store.load_jobs(job_ids) if isinstance(job, Job)]
    first = min(job.started_at for job in done if job.started_at)
    last = max(job.finished_at for job in done if job.finished_at)
    seconds = (last - first).total_seconds()
    per_job = len(job_ids)
    result = {
        "broker": kind,
        "jobs": len(done),
        "failed": sum(job.status.value == "failed" for job in done),
        "img_s": round(len(done) / seconds, 1),
        "cpu_ms_per_job": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / per_job, 2)
            for name in cpu_after
        },  # fmt: skip
        **redis_per_job(counts, per_job),
    }
    return result


def through_http(settings: Settings, client: redis_py.Redis, broker: RabbitMQServer | None,
                 images: list[bytes], jobs: int,
                 cpu: Callable[[], dict[str, float]]) -> dict:  # fmt: skip
    """A job's whole life through the gateway (in process): submit, one long poll to the end."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(settings)) as api:
        api.post("/v1/jobs", files={"file": ("x.jpg", images[0])})  # connections opened
        client.config_resetstat()
        broker_bytes_before = broker.connection_bytes() if broker else 0
        cpu_before = cpu()
        memory_before = int(client.info("memory")["used_memory"])
        for index in range(jobs):
            reply = api.post("/v1/jobs", files={"file": ("x.jpg", images[index % len(images)])})
            assert reply.status_code == 202, reply.text
            job = api.get(reply.headers["Location"], params={"wait": 60}).json()
            assert job["status"] == "succeeded", job
        cpu_after = cpu()
        counts = redis_counts(client)
        memory_after = int(client.info("memory")["used_memory"])
        result = {
            "jobs": jobs,
            # What a finished job holds in Redis until it expires (PNEUMO_JOB_TTL_S).
            "redis_memory_bytes_per_job": round((memory_after - memory_before) / jobs),
            # The gateway runs in this process (not measured): the others' CPU per job.
            "cpu_ms_per_job": {
                name: round((cpu_after[name] - cpu_before[name]) * 1000 / jobs, 2)
                for name in cpu_after
            },
            **redis_per_job(counts, jobs),
        }
        if broker is not None:
            result["rabbitmq_bytes_per_job"] = round(
                (broker.connection_bytes() - broker_bytes_before) / jobs
            )
    return result


def build_tiny_model(directory: Path) -> Path:
    """An untrained 64-px CNN (the tests' tiny model): the model costs little, so the drain
    shows what the broker and the records cost a worker."""
    from dataclasses import asdict

    from shared.imaging import PreprocessParams
    from shared.model_card import ModelCard
    from worker.model.architecture import Architecture, build_classifier
    from worker.model.artifact import save_artifact

    architecture = Architecture(image_size=64, block_filters=(8, 16, 32, 64), dense_units=16)
    card = ModelCard(name="tiny-bench-model", version="0.0.1", synthetic=True,
                     preprocessing=PreprocessParams(image_size=64),
                     architecture=asdict(architecture))  # fmt: skip
    save_artifact(build_classifier(architecture), card, directory)
    return directory


def run(model_dir: Path, jobs: int, http_jobs: int, rounds: int, batch_size: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="pneumo-bench-brokers-"))
    images = benchmark_jpegs(16, sides=(1000, 2000))
    drains: dict[str, list[dict]] = {kind: [] for kind in BROKERS}
    for round_ in range(1, rounds + 1):
        for kind in BROKERS:
            result = drain(kind, workdir / f"{kind}-{round_}", model_dir, images, jobs,
                           http_jobs if round_ == 1 else 0, batch_size)  # fmt: skip
            drains[kind].append(result)
            print(f"[bench.brokers {time.strftime('%H:%M:%S')}] round {round_} {kind}: "
                  f"{json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)})}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {
        "model": str(model_dir), "jobs_per_drain": jobs, "rounds": rounds,
        "batch_size": batch_size, "drains": drains,
        "median_img_s": {kind: statistics.median(d["img_s"] for d in runs)
                         for kind, runs in drains.items()},
    }  # fmt: skip


def markdown(results: dict) -> str:
    lines = [f"Model {results['model']}, batch {results['batch_size']}, "
             f"{results['jobs_per_drain']} jobs per drain, {results['rounds']} rounds "
             "(brokers taking turns).", "",
             "| broker | img/s per round (median) | CPU ms/job worker, redis, rabbitmq | "
             "Redis commands/job | Redis bytes/job | RabbitMQ bytes/job |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for kind, runs in results["drains"].items():
        first = runs[0]
        rates = ", ".join(str(run["img_s"]) for run in runs)
        cpu = first["cpu_ms_per_job"]
        lines.append(
            f"| {kind} | {rates} ({results['median_img_s'][kind]}) | "
            f"{cpu['worker']}, {cpu['redis']}, {cpu.get('rabbitmq', '-')} | "
            f"{first['redis_commands_per_job']} | {first['redis_bytes_per_job']} | "
            f"{first.get('rabbitmq_bytes_per_job', '-')} |"
        )
    for kind, runs in results["drains"].items():
        http = runs[0].get("through_http")
        if http:
            rabbitmq = http.get("rabbitmq_bytes_per_job", "-")
            lines.append(
                f"\nThrough the gateway ({kind}, {http['jobs']} jobs, submit + one long poll), "
                f"per job: Redis {http['redis_commands_per_job']} commands, "
                f"{http['redis_bytes_per_job']} bytes, {http.get('redis_memory_bytes_per_job')} "
                f"bytes held; RabbitMQ {rabbitmq} bytes; CPU ms "
                f"{json.dumps(http.get('cpu_ms_per_job', {}))}. "
                f"By command: {json.dumps(http['redis_commands'])}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--tiny-model", action="store_true",
                        help="an untrained 64-px model: the broker's cost shows")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per drain")
    parser.add_argument("--http-jobs", type=int, default=200,
                        help="jobs through the gateway after the first round's drains")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    arguments = parser.parse_args()
    model_dir = arguments.model
    if arguments.tiny_model:
        model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="pneumo-tiny-model-")))
    results = run(model_dir, arguments.jobs, arguments.http_jobs, arguments.rounds,
                  arguments.batch_size)  # fmt: skip
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
