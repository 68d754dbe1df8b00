"""The benchmark's quick mode as a smoke test: every figure present, every job served.

No timing assertions here (machines are shared and noisy); targets are judged from `make bench`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.profile import BUSY_CATEGORIES
from bench.run import Plan, markdown, run_benchmark

pytestmark = pytest.mark.slow


def test_quick_benchmark_reports_every_figure(tiny_model_dir: Path) -> None:
    plan = Plan(distinct_images=4, drain_jobs=64, requests={1: 4, 8: 8, 32: 32},
                baseline_requests=16, ceiling_seconds=1.0, profile=True, worker_decode_jobs=8,
                worker_variants={"big": {"PNEUMO_BATCH_SIZE": "32"}}, rounds=2)  # fmt: skip
    results = run_benchmark(plan, tiny_model_dir)
    drains = {"worker": 64, "worker_profiled": 64, "worker_big": 64, "worker_decoding": 8}
    for drain, jobs in drains.items():
        assert results[drain]["worker_jobs"] == jobs and results[drain]["worker_failed"] == 0
        assert results[drain]["redis_commands_per_job"] > 0
        assert results[drain]["worker_rss_mib_after_jobs"]  # the RSS trajectory
        # Present, not positive: the tiny model can drain 64 jobs before the meter starts (at
        # the worker's announcement), and /proc counts CPU in 10 ms ticks.
        assert results[drain]["cpu_ms_per_job"]["worker"] >= 0
    assert "worker_profile" not in results["worker"]  # sampling would slow the figure
    # py-spy may be missing, or refused ptrace (CI containers): then the profile says why.
    for drain in ("worker_profiled", "worker_decoding"):
        profile = results[drain]["worker_profile"]
        assert profile.get("skipped") or list(profile["categories"]) == list(BUSY_CATEGORIES)
    assert results["intake"]["decode_draft_ms"] < results["intake"]["decode_full_ms"]
    assert results["ceiling"]["model_cpu_ms_per_image"] > 0
    assert results["intake"]["cpu_ms_per_benchmark_film"] > 0
    assert 0 < results["bounds"]["e2e_over_ceiling_at_most"]
    for concurrency in ("1", "8", "32"):
        assert results["e2e"][concurrency]["errors"] == 0
        spent = results["e2e"][concurrency]["cpu_ms"]
        assert set(spent) == {"gateway", "worker", "redis", "load generator", "total"}
        assert spent["gateway"] > 0 and spent["worker"] > 0
    assert results["sync_baseline"]["errors"] == 0
    # The ceiling and the drain took turns twice: the median round is reported, and each.
    assert [set(round_) for round_ in results["worker_rounds"]] == 2 * [
        {"model_ceiling_img_s", "worker_img_s", "worker_over_ceiling"}
    ]
    assert "took turns 2 times: worker / ceiling" in markdown(results)
    # The compared pair took turns twice; each reports its median round and both rounds.
    for compared in (results["e2e"]["32"], results["sync_baseline"]):
        assert len(compared["rounds_img_s"]) == 2 and compared["img_s"] in compared["rounds_img_s"]
    assert results["sync_baseline"]["cpu_ms"]["baseline server"] > 0
    assert set(results["ratios"]) == {
        "worker_over_ceiling",
        "e2e32_over_ceiling",
        "e2e32_over_sync_baseline",
        "p50_c1_minus_single_model_ms",
    }
    table = markdown(results)
    assert "worker_over_ceiling" in table and "| 32 |" in table
    assert "At best, end to end reaches" in table
    assert "Worker profile" in table and "CPU ms per image, by process" in table
