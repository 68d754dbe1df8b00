"""The Grad-CAM audit and the bias experiment, end to end, with known answers.

A reduced run of the bias grid per module (worker.audit.bias_grid: one correlation, two
seeds, the grid's cell settings): a shortcut model trained where a bright border band marks
every PNEUMONIA film, and the same pipeline plus random border erasing, on the same films with
the same epochs. Seed 0 is audited too; every test reads those results.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from worker.audit.bias import BiasConfig, BiasResult, run_bias_experiment
from worker.audit.bias_grid import GridConfig
from worker.audit.bias_report import write_bias_report
from worker.audit.cli import register_commands as register_audit_commands
from worker.model.gradcam import METHOD_NAMES

pytestmark = pytest.mark.slow

# The border band at correlation 0.8, seeds 0 and 1: a cell of pneumo bias-grid. Measured
# under three kernel settings (oneDNN on with two threads, TF_ENABLE_ONEDNN_OPTS=0, one core by
# taskset), as another CPU's kernels would differ: flipped-set ROC-AUC 0.000 before the erasing
# in all six runs; after it 0.948 / 0.894, 0.839 / 0.904 and 0.757 / 0.783 (seed 0 / seed 1).
# At correlation 1.0 one seed's remedy failed outright (0.289), so that cell cannot carry a
# per-seed claim.
CONFIG = BiasConfig(correlation=0.8)
SHORTCUT_FLIPPED_AUC_AT_MOST = 0.15
REMEDY_FLIPPED_GAIN_AT_LEAST = 0.4
REMEDY_MEAN_FLIPPED_GAIN_AT_LEAST = 0.5
ISSUE_KEYS = {"pointing_game", "lesion_energy", "lung_energy", "border_energy",
              "randomization_similarity"}  # fmt: skip


def run(config: BiasConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[BiasResult, Path]:
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    out = tmp_path_factory.mktemp("bias-report")
    result = run_bias_experiment(config, out, tmp_path_factory.mktemp("bias-work"))
    if config.audit:
        write_bias_report(result, out)
    return result, out


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[BiasResult, Path]:
    return run(CONFIG, tmp_path_factory)


@pytest.fixture(scope="module")
def second_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[BiasResult, Path]:
    return run(replace(CONFIG, seed=1, audit=False), tmp_path_factory)


def test_the_reduced_run_is_a_cell_of_the_grid() -> None:
    grid = GridConfig()
    assert CONFIG.correlation in grid.correlations and CONFIG.seed in grid.seeds
    assert replace(CONFIG, audit=False) == replace(grid.cell, correlation=CONFIG.correlation)


def audit_app() -> typer.Typer:
    app = typer.Typer()
    register_audit_commands(app)
    return app


def variant(experiment, name: str) -> dict:
    return experiment[0].summary["variants"][name]


def test_the_shortcut_model_is_caught(experiment, second_seed) -> None:
    """It reads the band, not the lungs: its ranking inverts when the band changes sides, and
    its maps sit on the border rather than on the lesions (measured values: above CONFIG)."""
    for result in (experiment, second_seed):
        before = variant(result, "before")
        assert before["test"]["flipped"]["roc_auc"] <= SHORTCUT_FLIPPED_AUC_AT_MOST
    gradcam = variant(experiment, "before")["audit"]["gradcam"]
    assert gradcam["border_energy"] > (gradcam["lesion_energy"] or 0.0)
    assert gradcam["artifact_energy"] > 0.15  # the band covers 12 % of the image


def test_border_erasing_weakens_the_border_shortcut_on_both_seeds(experiment, second_seed) -> None:
    """Same data, epochs and settings; the only difference is the erasing. Ranking is compared
    (no threshold flatters it); the margins sit well below the gains measured per seed."""
    gains = []
    for result in (experiment, second_seed):
        before, after = variant(result, "before"), variant(result, "after")
        flipped_gain = after["test"]["flipped"]["roc_auc"] - before["test"]["flipped"]["roc_auc"]
        assert flipped_gain >= REMEDY_FLIPPED_GAIN_AT_LEAST, flipped_gain
        gains.append(flipped_gain)
    assert sum(gains) / len(gains) >= REMEDY_MEAN_FLIPPED_GAIN_AT_LEAST, gains
    fixed, shortcut = (variant(experiment, n)["audit"]["gradcam"] for n in ("after", "before"))
    # Artefact energy after / before, over the three kernel settings: 0.068-0.110 / 0.295-0.301.
    assert fixed["artifact_energy"] < shortcut["artifact_energy"] / 2
    assert variant(experiment, "after")["audit_data"]["with_artifact"] > 0


def test_the_shortcut_models_peaks_miss_the_lesions(experiment) -> None:
    """Over its true positives the shortcut model's Grad-CAM peaks never land within the
    pointing game's tolerance of a lesion (measured 0.0 under all three kernel settings; a peak
    placed at random scores about 0.13: a lesion and its 4 px margin cover 8-18 % of the 64 px
    input over 60 of these phantoms).

    Where the repaired model's maps point is reported, not asserted: its pointing game was 0.632,
    0.432 and 0.053 and its lung energy 0.272, 0.252 and 0.116 under the three settings. On one
    core the erasing repaired the ranking (flipped AUC 0.757) while the maps stayed on the border
    (border energy 0.397, as before): the remedy does not reliably move the explanation."""
    shortcut = variant(experiment, "before")["audit"]["gradcam"]
    assert shortcut["pointing_game_images"] > 0
    assert shortcut["pointing_game"] <= 0.05
    assert variant(experiment, "after")["audit"]["gradcam"]["pointing_game_images"] >= 30


def test_randomised_weights_change_the_maps(experiment) -> None:
    """The cascade runs whole, from the head down, and the verdict is the rule applied to every
    stage; every method's maps decorrelate once the whole network is random. Whether a method
    passes is not asserted: at the head-only stage Grad-CAM's Spearman/SSIM measured 0.01-0.72
    / 0.10-0.59 over five runs of the earlier experiment (seeds 0-2, oneDNN on and off, one
    thread and all), either side of the 0.5 line; at the last stage every method's Spearman
    stayed within -0.18..0.10."""
    audit = experiment[0].audits["after"].summary
    stages, limit = audit["randomization"]["stages"], audit["randomization"]["limit"]
    assert [stage["stage"] for stage in stages][:2] == ["head", "+ conv block 2"]
    for method in METHOD_NAMES:
        similar = [
            stage["stage"]
            for stage in stages
            if max(v for v in stage["methods"][method].values() if v is not None) > limit
        ]
        assert audit["methods"][method]["sanity_check_passed"] == (not similar), method
        assert (
            audit["methods"][method]["randomization_similarity"]
            == (stages[0]["methods"][method]["spearman"])
        )
    assert all(stages[-1]["methods"][m]["spearman"] < 0.4 for m in METHOD_NAMES)


def test_deletion_of_the_most_relevant_pixels_beats_random_order(experiment) -> None:
    """On the confident shortcut model: measured 0.362-0.370 per method against 0.964 in random
    order. (On the erasing model of this cell the curves do not separate from random order:
    0.454-0.527 against 0.502, docs/audit/bias/after.)"""
    audit = experiment[0].audits["before"].summary
    for method in METHOD_NAMES:
        assert audit["methods"][method]["deletion_auc"] < audit["random_deletion_auc"] - 0.05


def test_audit_and_bias_reports_are_written(experiment) -> None:
    result, out = experiment
    bias = json.loads((out / "bias.json").read_text())
    assert set(bias["variants"]) == {"before", "after"}
    for name in ("before", "after"):
        audit = json.loads((out / name / "audit.json").read_text())
        for method in METHOD_NAMES:
            assert ISSUE_KEYS <= set(audit["methods"][method]), method
        report = (out / name / "report.md").read_text()
        for figure in ("cam_grid.png", "deletion.png", "randomisation.png"):
            assert f"figures/{figure}" in report and (out / name / "figures" / figure).is_file()
    report = (out / "report.md").read_text()
    assert "figures/before_after.png" in report and (out / "figures/flipped_examples.png").is_file()


def test_the_audit_command_works_on_data_without_masks(experiment, tmp_path: Path) -> None:
    """A plain Kermany folder (no manifest, no masks): border energy, deletion and the
    randomisation check only; the ground-truth measures are null."""
    result, _ = experiment
    source = result.test_dirs["flipped"]
    shutil.copytree(source / "test", tmp_path / "chest_xray" / "test")
    model_dir = result.model_dirs["after"]
    out = tmp_path / "report"
    arguments = ["audit", "--model", str(model_dir), "--data", str(tmp_path), "--out", str(out),
                 "--limit", "24"]  # fmt: skip
    outcome = CliRunner().invoke(audit_app(), arguments)
    assert outcome.exit_code == 0, outcome.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["data"]["masks"] is False and audit["data"]["images"] == 24
    for method in METHOD_NAMES:
        scores = audit["methods"][method]
        assert scores["pointing_game"] is None and scores["lesion_energy"] is None
        assert scores["lung_energy"] is None
        assert 0.0 <= scores["border_energy"] <= 1.0
        assert scores["randomization_similarity"] is not None
    assert "Grad-CAM audit" in outcome.output and "report.md" in outcome.output


def test_the_bias_command_refuses_an_unknown_artefact(tmp_path: Path) -> None:
    arguments = ["bias-experiment", "--artifact", "sticker", "--out", str(tmp_path)]
    outcome = CliRunner().invoke(audit_app(), arguments)
    assert outcome.exit_code != 0 and "border_band" in outcome.output
    assert not any(tmp_path.iterdir())


def test_the_audit_command_names_a_missing_model(tmp_path: Path) -> None:
    arguments = ["audit", "--model", str(tmp_path / "nothing"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "report")]  # fmt: skip
    outcome = CliRunner().invoke(audit_app(), arguments)
    assert outcome.exit_code == 2 and "Cannot audit" in outcome.output
    assert not (tmp_path / "report").exists()
