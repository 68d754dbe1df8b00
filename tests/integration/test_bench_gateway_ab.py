"""`python -m bench.gateway_ab` in miniature: two gateways from two checkouts (here the same
one twice) take turns at one load, served by one worker, and each gets its figures."""

from __future__ import annotations

from pathlib import Path

from bench.gateway_ab import TREES, compare
from bench.processes import REPO_ROOT


def test_both_gateways_serve_the_load_and_get_their_figures(tiny_model_dir: Path) -> None:
    results = compare(REPO_ROOT, tiny_model_dir, requests=8, concurrency=2, rounds=1)
    assert results["errors"] == dict.fromkeys(TREES, 0)
    for tree in TREES:
        figures = results["medians"][tree]
        assert figures["gateway_cpu_ms"] > 0 and figures["img_s"] > 0 and figures["p50_ms"] > 0
    assert results["this_over_baseline_gateway_cpu"] > 0
