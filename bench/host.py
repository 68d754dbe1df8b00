"""`python -m bench --host` / `make bench-host`: one host as deployed, end to end.

On this one machine: Redis, N gateway processes behind one port (`uvicorn --workers N`, the
gateway's factory), and M worker processes sharing each GPU with their model memory bounded,
N and M from `bench.sizing` (the rule in deploy/README.md) unless given. Then, side by side:
(a) the model ceiling in process, (b) the worker pool draining a pre-filled queue, (c) HTTP
submit-and-poll at concurrency 1, 32 and 256 on 1,000 px JPEGs with p50/p95/p99, (d) the CPU
each kind of process spent per image (from /proc), and (e) what bounds each run: how busy
each kind was against what it has, and with `--profile` py-spy samples of a gateway and a
worker over one more run at the top concurrency (`bench.profile`), apart from the measured
ones, which sampling would slow.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drain import (
    bench_store,
    fill_queue,
    forget_jobs,
    model_preprocessing,
    start_pool,
    stop_all,
    time_drain,
)
from bench.load import load_processes, run_load_in_processes
from bench.measure import (
    benchmark_jpegs,
    display_copy_costs,
    intake_cpu_ms_per_film,
    model_ceiling,
)
from bench.processes import (
    RedisServer,
    UvicornProcess,
    WorkerProcess,
    wait_until,
)
from bench.profile import Profiler
from bench.run import PrintedAsMeasured
from bench.sizing import (
    GPU_WORKER_SETTINGS,
    HostSizing,
    host_sizing,
    usable_cores,
    visible_gpus,
    worker_memory_fraction,
)
from bench.stack import CpuMeter, HostBusy, descendants, gateway_environment
from shared.config import Settings

CONCURRENCIES = (1, 32, 256)


@dataclass(frozen=True)
class HostPlan:
    distinct_images: int
    drain_jobs: int
    requests: dict[int, int]  # concurrency -> requests
    ceiling_seconds: float
    batch_size: int | None = None  # None: the GPU workers' 128 on a GPU host, else 16
    jpeg_side: int = 1000
    profile: bool = False
    gateway_processes: int | None = None  # None: from the sizing rule
    workers_per_gpu: int | None = None  # None: from the sizing rule
    clients_per_load_process: int = 64

    @classmethod
    def quick(cls) -> HostPlan:
        return cls(4, 64, {1: 8, 32: 64, 256: 256}, 2.0)

    @classmethod
    def full(cls) -> HostPlan:
        return cls(32, 16000, {1: 200, 32: 4000, 256: 20000}, 10.0)


def host_plan_sizing(plan: HostPlan, cores: int, gpus: int) -> HostSizing:
    """The rule's sizing for this host, with the plan's overrides on top."""
    sizing = host_sizing(cores, gpus)
    if plan.workers_per_gpu is not None and plan.workers_per_gpu != sizing.workers_per_gpu:
        fraction = worker_memory_fraction(plan.workers_per_gpu) if sizing.gpus else None
        sizing = dataclasses.replace(sizing, workers_per_gpu=plan.workers_per_gpu,
                                     worker_memory_fraction=fraction)  # fmt: skip
    if plan.gateway_processes is not None:
        sizing = dataclasses.replace(sizing, gateway_processes=plan.gateway_processes)
    return sizing


def worker_settings(sizing: HostSizing, batch_size: int) -> dict[str, str]:
    """Every worker's settings: the GPU services' on a GPU host, as compose and k8s run them."""
    base = GPU_WORKER_SETTINGS if sizing.gpus else {}
    return base | {"PNEUMO_BATCH_SIZE": str(batch_size)}


def run_host_benchmark(plan: HostPlan, model_dir: Path, cores: int | None = None,
                       gpus: int | None = None) -> dict:  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="pneumo-bench-host-"))
    cores = usable_cores() if cores is None else cores
    gpus = visible_gpus() if gpus is None else gpus
    sizing = host_plan_sizing(plan, cores, gpus)
    batch_size = plan.batch_size or (int(GPU_WORKER_SETTINGS["PNEUMO_BATCH_SIZE"]) if gpus else 16)
    settings = worker_settings(sizing, batch_size)
    pool = [sizing.worker_gpu_environment(index) for index in range(sizing.worker_processes)]
    results = PrintedAsMeasured()
    results["plan"] = dataclasses.asdict(plan) | {
        "requests": {str(key): value for key, value in plan.requests.items()}
    }
    results["host"] = dataclasses.asdict(sizing) | {
        "worker_processes": sizing.worker_processes, "worker_settings": settings,
        "worker_gpu_environments": pool,
    }  # fmt: skip
    images = benchmark_jpegs(plan.distinct_images, sides=(plan.jpeg_side, plan.jpeg_side))
    preprocessing = model_preprocessing(model_dir)
    results["intake"] = {
        "jpeg_side": plan.jpeg_side,
        "jpeg_kb": round(sum(map(len, images)) / len(images) / 1024, 1),
        "cpu_ms_per_benchmark_film": intake_cpu_ms_per_film(images, preprocessing),
    } | display_copy_costs(images, preprocessing)
    results["ceiling"] = model_ceiling(model_dir, batch_size, plan.ceiling_seconds)
    with RedisServer(workdir / "redis") as redis:
        store = bench_store(redis)
        job_ids = fill_queue(store, Settings(redis_url=redis.url), model_dir, images,
                             plan.drain_jobs, worker_decodes=False, name="pool")  # fmt: skip
        workers = start_pool(redis, model_dir, workdir, batch_size, "worker", settings, pool)
        try:
            results["pool"] = time_drain(redis, store, workers, job_ids,
                                         workdir / "pool-profile.txt")  # fmt: skip
            # The same workers serve the HTTP runs, on a Redis as small as a fresh one.
            forget_jobs(redis, job_ids)
            runs, profiled = http_runs(redis, model_dir, images, plan, sizing, workers, workdir)
            results["e2e"] = runs
            if profiled is not None:
                results["e2e_profiled"] = profiled
        finally:
            stop_all(workers)
    results["ratios"] = host_ratios(results)
    results["bounds"] = {concurrency: run_bounds(run, sizing, results["pool"]["worker_img_s"])
                         for concurrency, run in results["e2e"].items()}  # fmt: skip
    return results


def http_runs(redis: RedisServer, model_dir: Path, images: list[bytes], plan: HostPlan,
              sizing: HostSizing, workers: list[WorkerProcess],
              workdir: Path) -> tuple[dict[str, dict], dict | None]:  # fmt: skip
    """The gateways up beside the pool; the load at each concurrency in turn, then with
    `plan.profile` a profiled run at the top concurrency (a quarter of its requests)."""
    gateway = UvicornProcess("gateway.app:create_app", gateway_environment(redis, model_dir),
                             workdir / "gateway.log", "/readyz", factory=True,
                             processes=sizing.gateway_processes)  # fmt: skip
    try:
        gateway.start(timeout_s=180)
        assert gateway.process is not None and redis.process is not None
        gateway_pid = gateway.process.pid
        if sizing.gateway_processes > 1:  # every server up, not only the first to answer
            wait_until(lambda: len(descendants(gateway_pid)) >= sizing.gateway_processes, 120,
                       f"{sizing.gateway_processes} gateway processes")  # fmt: skip
        pids = {"gateway": gateway_pid, "worker": _pids(workers), "redis": redis.process.pid}
        runs = {}
        for concurrency, count in sorted(plan.requests.items()):
            runs[str(concurrency)] = timed_load(gateway.url, images, count, concurrency, pids,
                                                plan.clients_per_load_process)  # fmt: skip
            print(f"[bench host] @{concurrency}: {runs[str(concurrency)]['img_s']} img/s",
                  file=sys.stderr, flush=True)  # fmt: skip
        if not plan.profile:
            return runs, None
        top = max(plan.requests)
        profiled = timed_load(gateway.url, images, max(1, plan.requests[top] // 4), top, pids,
                              plan.clients_per_load_process, profile_dir=workdir)  # fmt: skip
        return runs, profiled
    finally:
        gateway.stop()


def _pids(workers: list[WorkerProcess]) -> list[int]:
    return [worker.process.pid for worker in workers if worker.process is not None]


def timed_load(url: str, images: list[bytes], count: int, concurrency: int,
               pids: dict[str, Any], clients_per_process: int,
               profile_dir: Path | None = None) -> dict:  # fmt: skip
    """One load run: img/s and latencies, the CPU each kind of process spent per image, and
    with `profile_dir` py-spy samples of one gateway process and one worker meanwhile."""
    profilers = {}
    if profile_dir is not None:
        gateway_servers = descendants(pids["gateway"]) or [pids["gateway"]]
        targets = {"gateway": max(gateway_servers), "worker": pids["worker"][0]}
        profilers = {kind: Profiler(pid, profile_dir / f"e2e-{kind}-profile.txt").start()
                     for kind, pid in targets.items()}  # fmt: skip
    with CpuMeter(pids, load_generator=False) as meter, HostBusy() as host:
        load, load_cpu_s = run_load_in_processes(url, images, count, concurrency,
                                                 clients_per_process)  # fmt: skip
    profiles = {kind: profiler.stop() for kind, profiler in profilers.items()}
    cpu = meter.per_request_ms(count)
    cpu["load generator"] = round(load_cpu_s * 1000.0 / count, 2)
    cpu["total"] = round(cpu["total"] + cpu["load generator"], 2)
    processes = load_processes(concurrency, count, clients_per_process)
    run = load.summary() | {"cpu_ms": cpu, "host_busy_share": host.share,
                            "load_processes": processes}  # fmt: skip
    return run | ({"profiles": profiles} if profiles else {})


def host_ratios(results: dict) -> dict[str, float]:
    ceiling = results["ceiling"]["model_ceiling_img_s"]
    pool = results["pool"]["worker_img_s"]
    top = results["e2e"][max(results["e2e"], key=int)]["img_s"]
    return {"pool_over_ceiling": round(pool / ceiling, 3),
            "e2e_top_over_ceiling": round(top / ceiling, 3),
            "e2e_top_over_pool": round(top / pool, 3)}  # fmt: skip


def run_bounds(run: dict, sizing: HostSizing, pool_img_s: float) -> dict:
    """How busy each kind of process was in one run, against what it has: cores busy (CPU ms
    per image x img/s) over its processes for the single-threaded-in-Python kinds (a gateway
    process, Redis), over the host's cores for all of them together, and for the workers the
    run's img/s over what the pool drained alone. The busiest is named as the bound; a run
    with none near 1 is bound by latency (too few requests in flight), not capacity."""
    img_s, cpu = run["img_s"], run["cpu_ms"]
    busy = {kind: cpu[kind] * img_s / 1000.0 for kind in ("gateway", "redis", "load generator")}
    load_processes = run.get("load_processes", 1)
    usage = {
        "gateway": busy["gateway"] / sizing.gateway_processes,
        "redis": busy["redis"] / 1,
        "load generator": busy["load generator"] / load_processes,
        "worker pool": img_s / pool_img_s,
        "host cores": cpu["total"] * img_s / 1000.0 / sizing.cores,
        # Every process on the machine: others' work (a shared box) or the kernel's.
        "host cores, all processes": run["host_busy_share"],
    }
    usage = {kind: round(value, 3) for kind, value in usage.items()}
    bound = max(usage, key=lambda kind: usage[kind])
    return {"usage": usage, "bound": bound if usage[bound] >= 0.8 else "latency (none busy)"}


def host_markdown(results: dict) -> str:
    host, ceiling, pool = results["host"], results["ceiling"], results["pool"]
    lines = [
        f"Host: {host['cores']} cores, {host['gpus']} GPU(s); {host['gateway_processes']} "
        f"gateway processes, {host['worker_processes']} worker processes "
        f"({host['workers_per_gpu']} per GPU, model memory fraction "
        f"{host['worker_memory_fraction']}); worker settings {host['worker_settings']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| model ceiling img/s (batch {ceiling['batch_size']}) | "
        f"{ceiling['model_ceiling_img_s']} |",
        f"| worker pool drain img/s ({pool['worker_jobs']} jobs, {pool['worker_failed']} failed) "
        f"| {pool['worker_img_s']} |",
        f"| pool CPU ms per job: worker, Redis | {pool['cpu_ms_per_job']['worker']}, "
        f"{pool['cpu_ms_per_job']['redis']} |",
        f"| intake CPU ms per {results['intake']['jpeg_side']} px film | "
        f"{results['intake']['cpu_ms_per_benchmark_film']} |",
        f"| of which the display copy, kept as sent / drawn again (ms, side by side) | "
        f"{results['intake']['display_kept_ms']} / {results['intake']['display_redrawn_ms']} |",
    ]
    lines += [f"| {name} | {value} |" for name, value in results["ratios"].items()]
    kinds = ["gateway", "worker", "redis", "load generator", "total"]
    lines += ["", "| concurrency | img/s | p50 ms | p95 ms | p99 ms | errors | CPU ms per image: "
              + ", ".join(kinds) + " | bound |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for concurrency, run in results["e2e"].items():
        cpu = ", ".join(str(run["cpu_ms"][kind]) for kind in kinds)
        bound = results["bounds"][concurrency]
        lines.append(f"| {concurrency} | {run['img_s']} | {run['p50_ms']} | {run['p95_ms']} | "
                     f"{run['p99_ms']} | {run['errors']} | {cpu} | {bound['bound']} "
                     f"{json.dumps(bound['usage'])} |")  # fmt: skip
    for section, profile in _profiles(results):
        lines += ["", f"{section}: " + _profile_line(profile)]
    return "\n".join(lines) + "\n"


def _profiles(results: dict) -> list[tuple[str, dict]]:
    profiled = results.get("e2e_profiled")
    if profiled is None:
        return []
    return [(f"{kind.capitalize()} profile (a profiled run @{profiled['concurrency']}, "
             f"{profiled['img_s']} img/s)", profile)
            for kind, profile in profiled["profiles"].items()]  # fmt: skip


def _profile_line(profile: dict) -> str:
    if "skipped" in profile:
        return f"skipped: {profile['skipped']}"
    categories = profile["categories"].items()
    shares = ", ".join(f"{category} {row['busy_share']:.1%}"
                       for category, row in categories if row["samples"])  # fmt: skip
    return f"{profile['busy_samples']} busy samples: {shares}"


def main_host(quick: bool, json_path: Path | None, model_dir: Path, **plan_changes: Any) -> dict:
    started = time.perf_counter()
    plan = dataclasses.replace(HostPlan.quick() if quick else HostPlan.full(), **plan_changes)
    results = run_host_benchmark(plan, model_dir)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(host_markdown(results))
    return results
