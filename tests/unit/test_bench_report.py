"""The benchmark's report for a drains-only run (`--no-http`), as the GPU run makes it, and
how alternating rounds are summed up."""

from __future__ import annotations

from bench.run import drains, markdown, median_round, ratios


def drain(img_s: float, profiled: bool = False) -> dict:
    return {"worker_img_s": img_s, "worker_jobs": 5000, "worker_failed": 0,
            "redis_commands_per_job": 15.1, "model_busy_share": 0.81,
            "worker_rss_start_mib": 1598.6, "worker_rss_end_mib": 1610.4, "profiled": profiled,
            "cpu_ms_per_job": {"worker": 2.31, "redis": 0.42}}  # fmt: skip


RESULTS = {
    "plan": {"drain_jobs": 5000},
    "ceiling": {
        "model_ceiling_img_s": 12000.0,
        "model_cpu_ms_per_image": 0.3,
        "single_image_model_ms": 1.4,
        "batch_size": 128,
    },
    "worker": drain(2400.0),
    "worker_profiled": drain(2000.0, profiled=True),
    "worker_ack": drain(720.0),
}


def test_a_drains_only_run_reports_every_drain_against_the_ceiling() -> None:
    assert drains(RESULTS) == ["worker", "worker_profiled", "worker_ack"]
    assert ratios(RESULTS) == {"worker_over_ceiling": 0.2}
    table = markdown(RESULTS | {"ratios": ratios(RESULTS)})
    row = "| worker_ack | 5000 | 720.0 | 0.060 | 0 | 15.1 | 2.31, 0.42 | 0.81 | 1598.6 → 1610.4 |"
    assert row in table
    assert "the model alone costs 0.3 ms of CPU per image" in table
    assert "| worker_profiled (profiled: slower) |" in table
    assert "concurrency" not in table and "CPU ms per image" not in table  # no HTTP runs


def test_alternating_rounds_report_the_median_round_whole() -> None:
    rounds = [{"img_s": 80.0, "p50_ms": 390.0}, {"img_s": 70.0, "p50_ms": 450.0},
              {"img_s": 90.0, "p50_ms": 350.0}]  # fmt: skip
    # The median round's own latency goes with its throughput: not a mix of rounds.
    assert median_round(rounds) == {"img_s": 80.0, "p50_ms": 390.0,
                                    "rounds_img_s": [80.0, 70.0, 90.0]}  # fmt: skip
    assert median_round(rounds[:2])["img_s"] == 70.0  # even count: the lower middle one
    assert median_round(rounds[:1])["rounds_img_s"] == [80.0]
