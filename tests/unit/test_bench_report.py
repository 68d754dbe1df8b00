"""The benchmark's report for a drains-only run (`--no-http`), as the GPU run makes it."""

from __future__ import annotations

from bench.run import drains, markdown, ratios


def drain(img_s: float, profiled: bool = False) -> dict:
    return {"worker_img_s": img_s, "worker_jobs": 5000, "worker_failed": 0,
            "redis_commands_per_job": 15.1, "worker_rss_start_mib": 1598.6,
            "worker_rss_end_mib": 1610.4, "profiled": profiled}  # fmt: skip


RESULTS = {
    "plan": {"drain_jobs": 5000},
    "ceiling": {"model_ceiling_img_s": 12000.0, "single_image_model_ms": 1.4, "batch_size": 128},
    "worker": drain(2400.0),
    "worker_profiled": drain(2000.0, profiled=True),
    "worker_ack": drain(720.0),
}


def test_a_drains_only_run_reports_every_drain_against_the_ceiling() -> None:
    assert drains(RESULTS) == ["worker", "worker_profiled", "worker_ack"]
    assert ratios(RESULTS) == {"worker_over_ceiling": 0.2}
    table = markdown(RESULTS | {"ratios": ratios(RESULTS)})
    assert "| worker_ack | 5000 | 720.0 | 0.060 | 0 | 15.1 | 1598.6 → 1610.4 |" in table
    assert "| worker_profiled (profiled: slower) |" in table
    assert "concurrency" not in table and "CPU ms per image" not in table  # no HTTP runs
