"""The bias experiment over a grid: artefacts x train correlations x seeds, before and after.

One artefact the remedy was designed for (the border band) and one it was not (a text label
over the apices, further in than any film border). Each cell trains both variants on the same
phantoms with the same settings (worker.audit.bias, no audit) and keeps their test scores; the
summary gives mean and sample standard deviation over seeds, so a difference can be read
against the spread. Figures and report: worker.audit.bias_grid_report.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from worker.audit.bias import TEST_SETS, VARIANTS, BiasConfig, run_bias_experiment

log = logging.getLogger(__name__)

SUMMARISED = ("accuracy", "roc_auc")


@dataclass(frozen=True)
class GridConfig:
    artifacts: tuple[str, ...] = ("border_band", "text_marker")
    correlations: tuple[float, ...] = (0.6, 0.8, 0.95, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    cell: BiasConfig = BiasConfig(audit=False)


def run_bias_grid(config: GridConfig, out_dir: Path, work_dir: Path) -> dict:
    """Every cell of the grid; writes out_dir/grid.json and returns its content."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    runs: list[dict] = []
    started = time.perf_counter()
    grid: dict = {}
    cells = [(a, c, s) for c in config.correlations for s in config.seeds for a in config.artifacts]
    for artifact, correlation, seed in cells:  # every correlation's seeds before the next one
        keras.utils.set_random_seed(seed)
        cell = replace(config.cell, artifact=artifact, correlation=correlation, seed=seed)
        scratch = work_dir / f"{artifact}-{correlation:g}-{seed}"
        result = run_bias_experiment(cell, scratch / "report", scratch)
        runs.append({"artifact": artifact, "correlation": correlation, "seed": seed,
                     "variants": result.summary["variants"]})  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)  # phantoms and models: disk, not data
        tests = {name: result.summary["variants"][name]["test"] for name in VARIANTS}
        log.info(
            "%s at %.2f seed %d: flipped AUC before %.3f after %.3f, clean AUC before "
            "%.3f after %.3f (%.0f s so far)", artifact, correlation, seed,
            tests["before"]["flipped"]["roc_auc"], tests["after"]["flipped"]["roc_auc"],
            tests["before"]["clean"]["roc_auc"], tests["after"]["clean"]["roc_auc"],
            time.perf_counter() - started,
        )  # fmt: skip
        grid = write_grid(config, runs, time.perf_counter() - started, out_dir)  # kept as it grows
    return grid


def write_grid(config: GridConfig, runs: list[dict], seconds: float, out_dir: Path) -> dict:
    """grid.json with the runs so far; `complete` says whether every cell is in."""
    expected = len(config.artifacts) * len(config.correlations) * len(config.seeds)
    grid = {"config": asdict(config), "seconds": round(seconds), "complete": len(runs) == expected,
            "runs": runs, "summary": summarise(runs)}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "grid.json").write_text(json.dumps(grid, indent=1) + "\n")
    return grid


def summarise(runs: list[dict]) -> dict:
    """artifact -> correlation -> variant -> test set -> metric -> {mean, sd, values}."""
    summary: dict = {}
    for run in runs:
        cell = summary.setdefault(run["artifact"], {}).setdefault(f"{run['correlation']:g}", {})
        for variant in VARIANTS:
            for test_set in TEST_SETS:
                for metric in SUMMARISED:
                    values = cell.setdefault(variant, {}).setdefault(test_set, {})
                    values.setdefault(metric, {"values": []})["values"].append(
                        run["variants"][variant]["test"][test_set][metric]
                    )
    for cell in (c for by_correlation in summary.values() for c in by_correlation.values()):
        for test_sets in cell.values():
            for metric_values in test_sets.values():
                for entry in metric_values.values():
                    values = np.array(entry["values"], dtype=float)
                    entry["mean"] = float(values.mean())
                    entry["sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary
