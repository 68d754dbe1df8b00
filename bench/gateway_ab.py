"""`python -m bench.gateway_ab --baseline PATH`: this checkout's gateway against another's, side
by side in one run.

A change to the gateway's CPU per image is hard to see across two runs on a shared machine, so
both gateways run at once: one from this checkout, one from `PATH` (another revision, e.g.
`git worktree add /tmp/baseline <rev>`), on one Redis, served by one worker of this checkout.
They take turns at the same HTTP load (submit and long-poll on 1,000 px phantom JPEGs, as
`python -m bench --host` does), one pass each per round, and the median round of each is
reported: the gateway's CPU ms per image (its process, from /proc), img/s and p50, and the
ratio of this checkout's gateway CPU to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.drain import start_pool, stop_all
from bench.load import run_load_in_processes
from bench.measure import benchmark_jpegs
from bench.processes import REPO_ROOT, RedisServer, UvicornProcess
from bench.run import DEFAULT_MODEL_DIR
from bench.stack import CpuMeter, gateway_environment

TREES = ("this", "baseline")


def compare(baseline: Path, model_dir: Path, requests: int, concurrency: int, rounds: int,
            batch_size: int = 16) -> dict:  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="pneumo-bench-gateway-ab-"))
    images = benchmark_jpegs(8, sides=(1000, 1000))
    runs: dict[str, list[dict]] = {tree: [] for tree in TREES}
    with RedisServer(workdir / "redis") as redis:
        workers = start_pool(redis, model_dir, workdir, batch_size, "worker",
                             {"PNEUMO_BATCH_SIZE": str(batch_size)}, [{}])  # fmt: skip
        gateways = {
            tree: UvicornProcess(
                "gateway.app:create_app",
                gateway_environment(redis, model_dir),
                workdir / f"gateway-{tree}.log",
                "/readyz",
                factory=True,
                tree=REPO_ROOT if tree == "this" else baseline,
            )  # fmt: skip
            for tree in TREES
        }
        try:
            for gateway in gateways.values():
                gateway.start(timeout_s=180)
                run_load_in_processes(gateway.url, images, concurrency, concurrency, 64)  # warm
            for _ in range(rounds):
                for tree, gateway in gateways.items():
                    assert gateway.process is not None
                    with CpuMeter({"gateway": gateway.process.pid}, load_generator=False) as cpu:
                        load, _ = run_load_in_processes(gateway.url, images, requests,
                                                        concurrency, 64)  # fmt: skip
                    runs[tree].append(load.summary() | {
                        "gateway_cpu_ms": cpu.per_request_ms(requests)["gateway"]})  # fmt: skip
                    print(f"[gateway ab] {tree}: {runs[tree][-1]}", file=sys.stderr, flush=True)
        finally:
            for gateway in gateways.values():
                gateway.stop()
            stop_all(workers)
    medians = {tree: {figure: statistics.median(run[figure] for run in runs[tree])
                      for figure in ("gateway_cpu_ms", "img_s", "p50_ms")}
               for tree in TREES}  # fmt: skip
    return {
        "baseline": str(baseline), "requests": requests, "concurrency": concurrency,
        "rounds": rounds, "errors": {tree: sum(run["errors"] for run in runs[tree])
                                     for tree in TREES},
        "medians": medians,
        "this_over_baseline_gateway_cpu": round(
            medians["this"]["gateway_cpu_ms"] / medians["baseline"]["gateway_cpu_ms"], 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="another checkout of this repository")  # fmt: skip
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--requests", type=int, default=400, help="per pass")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    results = compare(arguments.baseline.resolve(), arguments.model, arguments.requests,
                      arguments.concurrency, arguments.rounds)  # fmt: skip
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
