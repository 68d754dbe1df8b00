"""`make bench` / `pneumo bench`: every throughput figure from one run, side by side.

(a) model ceiling, (b) a worker draining a pre-filled queue, (c) HTTP submit-and-poll at
concurrency 1, 8, 32, (d) a synchronous seed-shaped baseline, (e) the ratios between them.
Machines here are shared and noisy: compare ratios from the same run, not absolute numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.drain import drain_queue, model_preprocessing
from bench.load import run_load
from bench.measure import (
    benchmark_jpegs,
    display_copy_costs,
    intake_costs,
    intake_cpu_ms_per_film,
    model_ceiling,
)
from bench.processes import RedisServer, UvicornProcess
from bench.stack import CpuMeter, gateway_environment, start_worker

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"
# The concurrency at which the service and the synchronous baseline are compared: every
# plan runs it, and the headline ratios read its row.
COMPARED_CONCURRENCY = 32


@dataclass(frozen=True)
class Plan:
    distinct_images: int
    drain_jobs: int
    requests: dict[int, int]  # concurrency -> requests
    baseline_requests: int
    ceiling_seconds: float  # the model ceiling's run, in all: split between the rounds
    batch_size: int = 16
    profile: bool = False  # py-spy a second drain: what the worker spends its time on
    profile_gil: bool = False  # that profile samples only the GIL's holder (see bench.profile)
    jpeg_sides: tuple[int, int] = (1000, 2000)  # the films' long side, px, drawn uniformly
    # A second drain of this many jobs whose queue holds uploads alone, so the worker decodes
    # each JPEG itself (what it does when the gateway's preprocessing differs from its own).
    worker_decode_jobs: int = 0
    # More drains, each with a worker started with these settings on top: name -> environment.
    worker_variants: dict[str, dict[str, str]] = field(default_factory=dict)
    http: bool = True  # False: drains only, no end-to-end or synchronous-baseline runs
    # The runs each headline ratio compares take turns this many times: the model ceiling and
    # the worker's drain, then end to end at COMPARED_CONCURRENCY and the synchronous baseline
    # (both servers up). Each pair reports its median round: a slow minute on a shared
    # machine then falls on both sides of a ratio, or on one round of several.
    rounds: int = 1

    @classmethod
    def quick(cls) -> Plan:
        return cls(8, 64, {1: 8, 8: 32, 32: 64}, 32, 3.0)

    @classmethod
    def full(cls) -> Plan:
        return cls(32, 5000, {1: 40, 8: 200, 32: 400}, 200, 15.0, rounds=3)  # 5,000: RSS check


class PrintedAsMeasured(dict):
    """The results; each section is also printed to stderr once measured, so a run of
    minutes shows its progress and one cut short still leaves what it had measured."""

    def __setitem__(self, section: str, value: object) -> None:
        super().__setitem__(section, value)
        if isinstance(value, dict):  # the headline figures; the JSON file has the rest
            value = {key: item for key, item in value.items() if not isinstance(item, dict)}
        print(f"[bench {time.strftime('%H:%M:%S')}] {section}: {json.dumps(value)}",
              file=sys.stderr, flush=True)  # fmt: skip


def run_benchmark(plan: Plan, model_dir: Path = DEFAULT_MODEL_DIR) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="pneumo-bench-"))
    images = benchmark_jpegs(plan.distinct_images, sides=plan.jpeg_sides)
    results = PrintedAsMeasured()
    results["plan"] = plan.__dict__ | {"requests": {str(k): v for k, v in plan.requests.items()}}
    preprocessing = model_preprocessing(model_dir)
    results["intake"] = intake_costs(benchmark_jpegs(1, seed=99, sides=(2000, 2000))[0],
                                     preprocessing, repeats=10)  # fmt: skip
    results["intake"]["cpu_ms_per_benchmark_film"] = intake_cpu_ms_per_film(images, preprocessing)
    results["intake"] |= display_copy_costs(images, preprocessing)
    with RedisServer(workdir / "redis") as redis:
        drain = functools.partial(drain_queue, redis, model_dir, images, workdir,
                                  plan.batch_size, profile_gil=plan.profile_gil)  # fmt: skip
        rounds, seconds = [], plan.ceiling_seconds / plan.rounds
        for round_ in range(1, plan.rounds + 1):
            ceiling = model_ceiling(model_dir, plan.batch_size, seconds)
            worker = drain(plan.drain_jobs, name=f"bench-worker-{round_}")
            rounds.append({"ceiling": ceiling, "worker": worker})
            print(f"[bench] round {round_}: ceiling {ceiling['model_ceiling_img_s']} img/s, "
                  f"worker {worker['worker_img_s']} img/s", file=sys.stderr)  # fmt: skip
        median = median_worker_round(rounds)
        results["ceiling"], results["worker"] = median["ceiling"], median["worker"]
        results["worker_rounds"] = [_worker_round_summary(round_) for round_ in rounds]
        if plan.profile:
            results["worker_profiled"] = drain(plan.drain_jobs, profile=True, name="profiled")
        for variant, settings in plan.worker_variants.items():
            results[f"worker_{variant}"] = drain(plan.drain_jobs, settings=settings, name=variant)
        if plan.worker_decode_jobs:
            results["worker_decoding"] = drain(plan.worker_decode_jobs, worker_decodes=True,
                                               profile=plan.profile, name="decoding")  # fmt: skip
    if plan.http:
        # A Redis of its own: the drains leave hundreds of MB of finished jobs behind, and
        # the append-only file's rewrites of them (a fork writing it all) would land on the
        # service's side of the end-to-end/baseline comparison only.
        with RedisServer(workdir / "redis-http") as redis:
            results["e2e"], results["sync_baseline"] = _http_runs(
                redis, model_dir, images, plan, workdir
            )
    results["ratios"] = ratios(results)
    results["bounds"] = bounds(results)
    return results


def _http_runs(redis: RedisServer, model_dir: Path, images: list[bytes], plan: Plan,
               workdir: Path) -> tuple[dict, dict]:  # fmt: skip
    """End to end at each concurrency (the service: a worker and the gateway), and the
    synchronous baseline, all servers up at once. At COMPARED_CONCURRENCY the service and the
    baseline alternate `plan.rounds` times; each reports its median round."""
    worker = start_worker(redis, model_dir, workdir, plan.batch_size, name="e2e-worker")
    environment = gateway_environment(redis, model_dir)
    gateway = UvicornProcess("gateway.app:create_app", environment, workdir / "gateway.log",
                             "/readyz", factory=True)  # fmt: skip
    baseline = UvicornProcess("bench.sync_baseline:app", environment, workdir / "baseline.log",
                              "/docs")  # fmt: skip
    try:
        gateway.start(timeout_s=180)
        baseline.start(timeout_s=180)
        assert gateway.process and baseline.process and worker.process and redis.process
        service = {"gateway": gateway.process.pid, "worker": worker.process.pid,
                   "redis": redis.process.pid}  # fmt: skip
        e2e, baseline_rounds = {}, []
        for concurrency, count in sorted(plan.requests.items()):
            if concurrency != COMPARED_CONCURRENCY:
                e2e[str(concurrency)] = _timed_load(gateway.url, images, count, concurrency,
                                                    service)  # fmt: skip
                continue
            service_rounds = []
            for _ in range(plan.rounds):
                service_rounds.append(_timed_load(gateway.url, images, count, concurrency, service))
                baseline_rounds.append(_timed_load(
                    baseline.url, images, plan.baseline_requests, concurrency,
                    {"baseline server": baseline.process.pid}, synchronous=True,
                ))  # fmt: skip
            e2e[str(concurrency)] = median_round(service_rounds)
        return e2e, median_round(baseline_rounds)
    finally:
        baseline.stop()
        gateway.stop()
        worker.stop()


def _timed_load(url: str, images: list[bytes], count: int, concurrency: int,
                pids: dict[str, int], synchronous: bool = False) -> dict:  # fmt: skip
    with CpuMeter(pids) as meter:
        load = run_load(url, _cycle(images, count), concurrency, synchronous)
    return load.summary() | {"cpu_ms": meter.per_request_ms(count)}


def lower_median(rounds: list[dict], key: Callable[[dict], float]) -> dict:
    """The round of median `key`: the lower middle one of an even count."""
    ranked = sorted(rounds, key=key)
    return ranked[(len(ranked) - 1) // 2]


def median_worker_round(rounds: list[dict]) -> dict:
    """The (ceiling, drain) round of median worker/ceiling ratio: its two figures come from
    the same minutes."""
    return lower_median(rounds, _worker_over_ceiling)


def _worker_over_ceiling(round_: dict) -> float:
    return round_["worker"]["worker_img_s"] / round_["ceiling"]["model_ceiling_img_s"]


def _worker_round_summary(round_: dict) -> dict[str, float]:
    return {"model_ceiling_img_s": round_["ceiling"]["model_ceiling_img_s"],
            "worker_img_s": round_["worker"]["worker_img_s"],
            "worker_over_ceiling": round(_worker_over_ceiling(round_), 3)}  # fmt: skip


def median_round(rounds: list[dict]) -> dict:
    """The round of median throughput (the lower middle one of an even count), and every
    round's throughput beside it."""
    median = lower_median(rounds, lambda round_: round_["img_s"])
    return median | {"rounds_img_s": [round_["img_s"] for round_ in rounds]}


def _cycle(images: list[bytes], count: int) -> list[bytes]:
    return [images[index % len(images)] for index in range(count)]


def ratios(results: dict) -> dict[str, float]:
    ceiling = results["ceiling"]["model_ceiling_img_s"]
    found = {"worker_over_ceiling": round(results["worker"]["worker_img_s"] / ceiling, 3)}
    if "e2e" not in results:  # a drains-only run
        return found
    e2e_32 = results["e2e"][str(COMPARED_CONCURRENCY)]["img_s"]
    return found | {
        "e2e32_over_ceiling": round(e2e_32 / ceiling, 3),
        "e2e32_over_sync_baseline": round(e2e_32 / results["sync_baseline"]["img_s"], 3),
        "p50_c1_minus_single_model_ms": round(
            results["e2e"]["1"]["p50_ms"] - results["ceiling"]["single_image_model_ms"], 1
        ),
    }


def bounds(results: dict) -> dict[str, float]:
    """What end to end could reach at best on this machine, as a fraction of the ceiling: every
    core busy with nothing but each image's intake (decode, preprocessing) and model CPU, and
    no HTTP, Redis, Celery or load generator at all. A target above it is out of any service's
    reach here; where the model is cheap beside a JPEG decode (a small CPU model), it is."""
    # The cores this process may use (a container's CPU set), where the OS says.
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    ceiling = results["ceiling"]
    per_image_ms = (
        ceiling["model_cpu_ms_per_image"] + results["intake"]["cpu_ms_per_benchmark_film"]
    )
    best_img_s = cores * 1000.0 / per_image_ms
    return {
        "cores": cores,
        "e2e_best_img_s": round(best_img_s, 1),
        "e2e_over_ceiling_at_most": round(best_img_s / ceiling["model_ceiling_img_s"], 3),
    }


def drains(results: dict) -> list[str]:
    """The sections that timed a worker draining a queue: `worker`, then the extra ones."""
    return [name for name, value in results.items()
            if isinstance(value, dict) and "worker_img_s" in value]  # fmt: skip


TARGETS = {
    "worker_over_ceiling": (">=", 0.85),
    "e2e32_over_ceiling": (">=", 0.7),
    "e2e32_over_sync_baseline": (">=", 1.5),
    "p50_c1_minus_single_model_ms": ("<=", 60.0),
}


def markdown(results: dict) -> str:
    lines = ["| figure | value | target | met |", "|---|---|---|---|"]
    for name, value in results["ratios"].items():
        op, bound = TARGETS[name]
        met = value >= bound if op == ">=" else value <= bound
        lines.append(f"| {name} | {value} | {op} {bound} | {'yes' if met else 'NO'} |")
    if "bounds" in results and results["bounds"]["e2e_over_ceiling_at_most"] < 1:
        limit, intake = results["bounds"], results["intake"]
        lines += ["", f"At best, end to end reaches {limit['e2e_over_ceiling_at_most']} × the "
                  f"model ceiling on this machine ({limit['e2e_best_img_s']} img/s): "
                  f"{limit['cores']} cores doing nothing but "
                  f"{results['ceiling']['model_cpu_ms_per_image']} ms of model and "
                  f"{intake['cpu_ms_per_benchmark_film']} ms of intake CPU per image."]  # fmt: skip
    lines += ["", "| measurement | value |", "|---|---|"]
    for section in (name for name in ("intake", "ceiling", "sync_baseline") if name in results):
        lines += [f"| {section}.{key} | {value} |" for key, value in results[section].items()
                  if not isinstance(value, dict | list)]  # fmt: skip
    lines += drains_markdown(results)
    if "e2e" in results:
        lines += [
            "",
            "| concurrency | img/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for concurrency, row in results["e2e"].items():
            lines.append(f"| {concurrency} | {row['img_s']} | {row['p50_ms']} | "
                         f"{row['p95_ms']} | {row['p99_ms']} | {row['errors']} |")  # fmt: skip
        rounds = results["e2e"][str(COMPARED_CONCURRENCY)].get("rounds_img_s", [])
        if len(rounds) > 1:
            lines += ["", f"End to end @32 and the synchronous baseline took turns {len(rounds)} "
                      f"times (img/s): {rounds} and {results['sync_baseline']['rounds_img_s']}; "
                      "each row above is its median round."]  # fmt: skip
    worker_rounds = results.get("worker_rounds", [])
    if len(worker_rounds) > 1:
        lines += ["", f"The model ceiling and the worker's drain took turns {len(worker_rounds)} "
                  "times: worker / ceiling "
                  f"{[round_['worker_over_ceiling'] for round_ in worker_rounds]} (img/s: "
                  f"{[round_['worker_img_s'] for round_ in worker_rounds]} / "
                  f"{[round_['model_ceiling_img_s'] for round_ in worker_rounds]}); the "
                  "figures above are the median round's."]  # fmt: skip
    samples = results["worker"].get("worker_rss_mib_after_jobs", {})
    if samples:
        trajectory = ", ".join(f"{jobs}: {mib}" for jobs, mib in samples.items())
        lines += ["", f"Worker RSS (MiB) after N jobs drained: {trajectory}"]
    if "e2e" in results:
        lines += cpu_markdown(results)
    for section in drains(results):
        if "worker_profile" in results[section]:
            lines += ["", f"Drain `{section}`:"]
            lines += profile_markdown(results[section]["worker_profile"])
    return "\n".join(lines) + "\n"


def drains_markdown(results: dict) -> list[str]:
    ceiling = results["ceiling"]["model_ceiling_img_s"]
    lines = ["", "| drain | jobs | img/s | / model ceiling | failed | Redis commands per job | "
             "CPU ms per job: worker, Redis | model busy | worker RSS MiB, start → end |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for section in drains(results):
        drain = results[section]
        cpu = drain.get("cpu_ms_per_job", {})
        lines.append(
            f"| {section}{' (profiled: slower)' if drain['profiled'] else ''} | "
            f"{drain['worker_jobs']} | {drain['worker_img_s']} | "
            f"{drain['worker_img_s'] / ceiling:.3f} | {drain['worker_failed']} | "
            f"{drain['redis_commands_per_job']} | {cpu.get('worker')}, {cpu.get('redis')} | "
            f"{drain['model_busy_share']} | "
            f"{drain['worker_rss_start_mib']} → {drain['worker_rss_end_mib']} |"
        )
    if "model_cpu_ms_per_image" in results["ceiling"]:
        model_cpu = results["ceiling"]["model_cpu_ms_per_image"]
        note = (
            f"At the ceiling the model alone costs {model_cpu} ms of CPU per image; a drain's "
            "worker CPU per job beyond that is what a job costs beside the model. Model busy: "
            "the share of the drain's time the model was computing (with two batches in "
            "flight, waiting for the other's call counts too)."
        )
        lines += ["", note]
    return lines


def cpu_markdown(results: dict) -> list[str]:
    """CPU ms each process spent per image: what a core-bound run is bounded by."""
    runs = {f"e2e @{concurrency}": row["cpu_ms"] for concurrency, row in results["e2e"].items()}
    runs["sync baseline @32"] = results["sync_baseline"]["cpu_ms"]
    names = list(dict.fromkeys(name for spent in runs.values() for name in spent))
    lines = ["", "CPU ms per image, by process:", "", "| run | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for run, spent in runs.items():
        lines.append(f"| {run} | " + " | ".join(str(spent.get(name, "")) for name in names) + " |")
    return lines


def profile_markdown(profile: dict) -> list[str]:
    """What the draining worker's threads spent their samples on; idle ones apart."""
    if "skipped" in profile:
        return ["", f"Worker profile skipped: {profile['skipped']}"]
    heading = (
        f"Worker profile (py-spy {profile['mode']}, {profile['rate_hz']} Hz, "
        f"{profile['seconds']} s, {profile['busy_samples']} busy and "
        f"{profile['idle_samples']} idle thread samples):"
    )
    lines = ["", heading]
    if "gil_held_share" in profile:
        lines += ["", f"Some thread held the GIL in {profile['gil_held_share']:.0%} of the ticks."]
    lines += ["", "| busy in | samples | share of busy |", "|---|---|---|"]
    for category, row in profile["categories"].items():
        lines.append(f"| {category} | {row['samples']} | {row['busy_share']:.1%} |")
    lines += ["", "| thread | busy | idle | busy in |", "|---|---|---|---|"]
    for name, thread in profile["threads"].items():
        work = ", ".join(f"{category} {samples}" for category, samples in thread["busy"].items())
        lines.append(f"| {name} | {thread['busy_samples']} | {thread['idle_samples']} | {work} |")
    return lines


def main(quick: bool, json_path: Path | None, model_dir: Path = DEFAULT_MODEL_DIR,
         profile: bool = False, **plan_changes: Any) -> dict:  # fmt: skip
    """`plan_changes`: Plan fields to override (batch_size, jpeg_sides), e.g. for a GPU;
    `dataclasses.replace` refuses a name that is not a field."""
    started = time.perf_counter()
    plan = dataclasses.replace(
        Plan.quick() if quick else Plan.full(), profile=profile, **plan_changes
    )
    results = run_benchmark(plan, model_dir)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return results
