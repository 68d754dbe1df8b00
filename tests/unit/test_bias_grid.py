"""The bias grid's bookkeeping: mean and sample sd over seeds, the report and its figures,
from runs with known scores (the training itself is tested in tests/integration/test_audit)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from worker.audit.bias import TEST_METRICS, TEST_SETS, VARIANTS
from worker.audit.bias_grid import GridConfig, summarise, write_grid
from worker.audit.bias_report import write_grid_report


def run(artifact: str, correlation: float, seed: int, flipped_after: float) -> dict:
    scores = dict.fromkeys(TEST_METRICS, 0.5)
    variants = {name: {"test": {test: dict(scores) for test in TEST_SETS}} for name in VARIANTS}
    variants["after"]["test"]["flipped"]["roc_auc"] = flipped_after
    return {"artifact": artifact, "correlation": correlation, "seed": seed, "variants": variants}


def test_summary_is_mean_and_sample_sd_over_seeds() -> None:
    runs = [run("border_band", 1.0, seed, value) for seed, value in enumerate((0.8, 0.9, 1.0))]
    cell = summarise(runs)["border_band"]["1"]
    flipped = cell["after"]["flipped"]["roc_auc"]
    assert flipped["values"] == [0.8, 0.9, 1.0]
    assert flipped["mean"] == pytest.approx(0.9) and flipped["sd"] == pytest.approx(0.1)
    assert cell["before"]["clean"]["accuracy"] == {"values": [0.5] * 3, "mean": 0.5, "sd": 0.0}


def test_a_partial_grid_is_written_and_reported_as_partial(tmp_path: Path) -> None:
    config = GridConfig(artifacts=("border_band", "text_marker"), correlations=(0.8, 1.0),
                        seeds=(0, 1))  # fmt: skip
    runs = [run(a, c, s, 0.7) for a in config.artifacts for c in (1.0,) for s in config.seeds]
    grid = write_grid(config, runs, 12.0, tmp_path)
    assert grid["complete"] is False and grid["config"] == asdict(config)
    report = write_grid_report(grid, tmp_path).read_text()
    assert "Partial grid**: 4 of 8 cells" in report
    assert "| text_marker | 1 | 0.500 ± 0.000 | 0.700 ± 0.000 |" in report
    for figure in ("grid_auc.png", "grid_accuracy.png"):
        assert f"figures/{figure}" in report and (tmp_path / "figures" / figure).stat().st_size
