"""The benchmark's quick mode as a test of its report: every figure present and of the right
kind, every job served, the ratios and bounds computed from the figures beside them.

No figure is compared with a time or with another timing (machines are shared and noisy; CPU
is counted in 10 ms ticks): targets are judged from `make bench`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.measure import model_ceiling
from bench.profile import BUSY_CATEGORIES
from bench.run import Plan, markdown, run_benchmark

pytestmark = pytest.mark.slow
DRAINED_JOBS = {"worker": 64, "worker_profiled": 64, "worker_big": 64, "worker_decoding": 8}


@pytest.fixture(scope="module")
def results(tiny_model_dir: Path) -> dict:
    plan = Plan(distinct_images=4, drain_jobs=64, requests={1: 4, 8: 8, 32: 32},
                baseline_requests=16, ceiling_seconds=1.0, profile=True, worker_decode_jobs=8,
                worker_variants={"big": {"PNEUMO_BATCH_SIZE": "32"}}, rounds=2)  # fmt: skip
    return run_benchmark(plan, tiny_model_dir)


def assert_measured(figures: dict, names: set[str]) -> None:
    """Exactly these figures, each a finite number no less than zero."""
    assert set(figures) == names
    for name, value in figures.items():
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, name


def test_every_drain_serves_its_jobs_and_reports_its_costs(results: dict) -> None:
    for drain, jobs in DRAINED_JOBS.items():
        summary = results[drain]
        assert summary["worker_jobs"] == jobs and summary["worker_failed"] == 0
        assert summary["redis_commands_per_job"] > 0
        assert summary["worker_rss_mib_after_jobs"]  # the RSS trajectory
        assert 0 <= summary["model_busy_share"] <= 1
        assert_measured(summary["cpu_ms_per_job"], {"worker", "redis", "total"})
    assert "worker_profile" not in results["worker"]  # sampling would slow the figure
    # py-spy may be missing, or refused ptrace (CI containers): then the profile says why.
    for drain in ("worker_profiled", "worker_decoding"):
        profile = results[drain]["worker_profile"]
        assert profile.get("skipped") or list(profile["categories"]) == list(BUSY_CATEGORIES)


def test_intake_and_ceiling_figures_are_present(results: dict) -> None:
    intake = dict(results["intake"])
    assert intake.pop("jpeg_bytes") > 0
    assert_measured(intake, {"decode_full_ms", "decode_draft_ms", "render_png_level1_ms",
                             "render_png_level6_ms", "cpu_ms_per_benchmark_film",
                             "display_kept_ms", "display_redrawn_ms",
                             "display_kept_over_redrawn", "display_kept_kb",
                             "display_redrawn_kb"})  # fmt: skip
    ceiling = results["ceiling"]
    assert ceiling["batch_size"] == results["plan"]["batch_size"]
    assert ceiling["model_ceiling_img_s"] > 0 and ceiling["model_cpu_ms_per_image"] >= 0
    # The ceiling and the drain took turns twice; the median round is the one reported.
    assert [set(round_) for round_ in results["worker_rounds"]] == 2 * [
        {"model_ceiling_img_s", "worker_img_s", "worker_over_ceiling"}
    ]
    reported = (ceiling["model_ceiling_img_s"], results["worker"]["worker_img_s"])
    assert reported in [
        (round_["model_ceiling_img_s"], round_["worker_img_s"])
        for round_ in results["worker_rounds"]
    ]


def test_http_runs_answer_every_request_and_count_each_process(results: dict) -> None:
    for concurrency, requests in results["plan"]["requests"].items():
        run = results["e2e"][concurrency]
        assert (run["concurrency"], run["requests"], run["errors"]) == (
            int(concurrency),
            requests,
            0,
        )
        assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
        assert_measured(run["cpu_ms"], {"gateway", "worker", "redis", "load generator", "total"})
    baseline = results["sync_baseline"]
    assert baseline["errors"] == 0
    assert_measured(baseline["cpu_ms"], {"baseline server", "load generator", "total"})
    # The compared pair took turns twice; each reports its median round and both rounds.
    for compared in (results["e2e"]["32"], baseline):
        assert len(compared["rounds_img_s"]) == 2 and compared["img_s"] in compared["rounds_img_s"]


def test_ratios_and_bounds_are_computed_from_the_figures_beside_them(results: dict) -> None:
    ceiling, e2e, baseline = results["ceiling"], results["e2e"], results["sync_baseline"]
    ceiling_img_s = ceiling["model_ceiling_img_s"]
    assert results["ratios"] == {
        "worker_over_ceiling": round(results["worker"]["worker_img_s"] / ceiling_img_s, 3),
        "e2e32_over_ceiling": round(e2e["32"]["img_s"] / ceiling_img_s, 3),
        "e2e32_over_sync_baseline": round(e2e["32"]["img_s"] / baseline["img_s"], 3),
        "p50_c1_minus_single_model_ms": round(
            e2e["1"]["p50_ms"] - ceiling["single_image_model_ms"], 1
        ),
    }
    bounds = results["bounds"]
    per_image_ms = (
        ceiling["model_cpu_ms_per_image"] + results["intake"]["cpu_ms_per_benchmark_film"]
    )
    best_img_s = bounds["cores"] * 1000.0 / per_image_ms
    assert bounds["cores"] >= 1 and bounds["e2e_best_img_s"] == round(best_img_s, 1)
    assert bounds["e2e_over_ceiling_at_most"] == round(best_img_s / ceiling_img_s, 3)


def test_markdown_report_shows_every_section(results: dict) -> None:
    table = markdown(results)
    assert "worker_over_ceiling" in table and "| 32 |" in table
    assert "took turns 2 times: worker / ceiling" in table
    assert "At best, end to end reaches" in table
    assert "Worker profile" in table and "CPU ms per image, by process" in table


def test_a_gated_model_has_its_ceiling_measured_with_and_without_the_gate(gated_model) -> None:
    """The gate's extra cost per image: the same batches scored and not (`make bench`)."""
    ceiling = model_ceiling(gated_model.directory, batch_size=4, seconds=0.2)
    with_gate, without = ceiling["model_ceiling_img_s"], ceiling["model_ceiling_without_gate_img_s"]
    assert with_gate > 0 and without > 0
    assert ceiling["ceiling_with_over_without_gate"] == round(with_gate / without, 3)
    assert ceiling["gate_scoring_ms_per_image"] >= 0
