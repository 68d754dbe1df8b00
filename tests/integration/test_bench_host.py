"""`python -m bench --host` in a quick plan, as a test of its harness and report: a host of two
gateway processes behind one port and two workers, every job and request served, the CPU of
each kind of process counted, the bound named from the figures beside it.

No figure is compared with a time (machines here are shared and noisy): the targets are judged
from a run on a GPU host (bench/device_run.sh, bench/RESULTS.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.host import HostPlan, host_markdown, run_bounds, run_host_benchmark
from bench.sizing import HostSizing

pytestmark = pytest.mark.slow
PLAN = HostPlan(distinct_images=2, drain_jobs=24, requests={1: 2, 32: 32, 256: 64},
                ceiling_seconds=0.3, profile=True, gateway_processes=2, workers_per_gpu=2,
                clients_per_load_process=128)  # fmt: skip


@pytest.fixture(scope="module")
def results(tiny_model_dir: Path) -> dict:
    return run_host_benchmark(PLAN, tiny_model_dir, cores=2, gpus=0)


def test_the_host_is_sized_as_planned(results: dict) -> None:
    host = results["host"]
    assert (host["cores"], host["gpus"], host["gateway_processes"]) == (2, 0, 2)
    assert host["worker_processes"] == 2 and host["worker_gpu_environments"] == [{}, {}]
    assert host["worker_settings"] == {"PNEUMO_BATCH_SIZE": "16"}  # a CPU host's default


def test_the_pool_drains_every_job_with_both_workers(results: dict) -> None:
    pool = results["pool"]
    assert (pool["worker_jobs"], pool["worker_failed"], pool["worker_processes"]) == (24, 0, 2)
    assert pool["worker_img_s"] > 0 and 0 <= pool["model_busy_share"] <= 1
    assert set(pool["cpu_ms_per_job"]) == {"worker", "redis", "total"}
    assert "worker_profile" not in pool  # sampling would slow the figure


def test_every_request_is_served_at_each_concurrency(results: dict) -> None:
    for concurrency, requests in PLAN.requests.items():
        run = results["e2e"][str(concurrency)]
        assert (run["concurrency"], run["requests"], run["errors"]) == (concurrency, requests, 0)
        assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
        assert run["load_processes"] == (2 if concurrency == 256 else 1)
        cpu = run["cpu_ms"]
        assert set(cpu) == {"gateway", "worker", "redis", "load generator", "total"}
        assert all(math.isfinite(value) and value >= 0 for value in cpu.values())
        # Both gateway processes and both workers are counted: each kind spent some CPU.
        assert cpu["gateway"] > 0 and cpu["worker"] > 0
        assert 0 <= run["host_busy_share"] <= 1
    assert all("profiles" not in run for run in results["e2e"].values())


def test_a_profiled_run_apart_samples_a_gateway_and_a_worker(results: dict) -> None:
    profiled = results["e2e_profiled"]
    assert (profiled["concurrency"], profiled["requests"], profiled["errors"]) == (256, 16, 0)
    for profile in profiled["profiles"].values():  # py-spy may be missing or refused ptrace
        assert profile.get("skipped") or profile["busy_samples"] + profile["idle_samples"] > 0
    assert set(profiled["profiles"]) == {"gateway", "worker"}


def test_ratios_and_bounds_come_from_the_figures_beside_them(results: dict) -> None:
    ceiling = results["ceiling"]["model_ceiling_img_s"]
    pool, top = results["pool"]["worker_img_s"], results["e2e"]["256"]["img_s"]
    assert results["ratios"] == {
        "pool_over_ceiling": round(pool / ceiling, 3),
        "e2e_top_over_ceiling": round(top / ceiling, 3),
        "e2e_top_over_pool": round(top / pool, 3),
    }
    sizing = HostSizing(2, 0, 2, 2, None)
    for concurrency, run in results["e2e"].items():
        assert results["bounds"][concurrency] == run_bounds(run, sizing, pool)


def test_the_report_shows_every_run(results: dict) -> None:
    report = host_markdown(results)
    assert "2 gateway processes, 2 worker processes" in report
    for concurrency in PLAN.requests:
        assert f"\n| {concurrency} | " in report
    assert "Gateway profile (a profiled run @256" in report and "Worker profile" in report
