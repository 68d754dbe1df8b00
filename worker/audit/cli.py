"""`pneumo audit`, `pneumo bias-experiment` and `pneumo bias-grid`: thin commands over
worker.audit.explanations, worker.audit.bias and worker.audit.bias_grid.

TensorFlow and matplotlib are imported inside the commands, so `pneumo --help` stays instant.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from worker.training.cli import ModelDir, Split

console = Console()


def audit(
    model: ModelDir,
    data: Annotated[Path, typer.Option(help="Kermany-layout folder (phantoms bring masks).")],
    out: Annotated[Path, typer.Option(help="Report directory: audit.json, report.md, figures/.")],
    split: Split = "test",
    limit: Annotated[int, typer.Option(min=1, help="Images audited (class-stratified).")] = 300,
    seed: Annotated[int, typer.Option(help="Picks the images and the random orders.")] = 0,
) -> None:
    """Score the served Grad-CAM maps: pointing game, lesion/lung/border energy, deletion, and
    the model-randomisation sanity check. Without masks, only what needs none."""
    from worker.audit.explanations import audit_model
    from worker.audit.report import audit_table, write_audit_report
    from worker.model.artifact import ArtifactError

    try:
        result = audit_model(model, data, split=split, limit=limit, seed=seed)
    except (ArtifactError, FileNotFoundError) as error:
        console.print(f"[red]Cannot audit:[/red] {error}")
        raise typer.Exit(2) from error
    report = write_audit_report(result, out)
    console.print(
        audit_table(result.summary, f"Grad-CAM audit on {split} ({len(result.data.labels)} images)")
    )
    console.print(f"Report: {report}")


Artifact = Annotated[str, typer.Option(help="border_band, padding, corner_marker or text_marker")]


def _check_artifact(artifact: str) -> None:
    from worker.phantoms.artefacts import ARTIFACTS

    if artifact not in ARTIFACTS:
        raise typer.BadParameter(
            f"--artifact must be one of {', '.join(ARTIFACTS)}, got {artifact!r}"
        )


def bias_experiment(
    out: Annotated[Path, typer.Option(help="Report directory (bias.json, report.md, ...).")],
    artifact: Artifact = "border_band",
    correlation: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of train films where it marks the label.")
    ] = 1.0,
    seed: int = 0,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep phantoms and models here (default: a temp folder).")
    ] = None,
) -> None:
    """Train on phantoms whose artefact marks PNEUMONIA, catch the shortcut with the audit,
    retrain with a generic remedy (random erasing of the film border) and compare both."""
    import keras
    import tensorflow as tf

    from worker.audit.bias import BiasConfig, run_bias_experiment
    from worker.audit.bias_report import comparison_table, write_bias_report

    _check_artifact(artifact)
    show_progress_of("worker.audit.bias")
    tf.config.experimental.enable_op_determinism()  # the committed numbers must be reproducible
    keras.utils.set_random_seed(seed)
    config = BiasConfig(artifact=artifact, correlation=correlation, seed=seed)
    with tempfile.TemporaryDirectory(prefix="pneumo-bias-") as scratch:
        result = run_bias_experiment(config, out, work_dir or Path(scratch))
    report = write_bias_report(result, out)
    console.print(comparison_table(result.summary))
    console.print(f"Report: {report}")


def bias_grid(
    out: Annotated[Path, typer.Option(help="Report directory (grid.json, grid.md, figures/).")],
    artifacts: Annotated[
        list[str] | None,
        typer.Option(
            "--artifact", help="Repeat for several (default: border_band and text_marker)."
        ),
    ] = None,
    correlations: Annotated[
        list[float] | None,
        typer.Option("--correlation", min=0.0, max=1.0, help="Repeat (default: 0.6 0.8 0.95 1.0)."),
    ] = None,
    seeds: Annotated[
        list[int] | None, typer.Option("--seed", help="Repeat (default: 0 1 2).")
    ] = None,
) -> None:
    """The bias experiment over train correlations x seeds x artefacts, before and after the
    remedy, without the audit: mean +- sd per cell, figures; 2 x cells trainings (grid.md
    states the time it took)."""
    from worker.audit.bias_grid import GridConfig, run_bias_grid
    from worker.audit.bias_report import write_grid_report

    defaults = GridConfig()
    for artifact in artifacts or ():
        _check_artifact(artifact)
    config = replace(
        defaults,
        artifacts=tuple(artifacts or defaults.artifacts),
        correlations=tuple(correlations or defaults.correlations),
        seeds=tuple(seeds or defaults.seeds),
    )
    show_progress_of("worker.audit.bias_grid")
    with tempfile.TemporaryDirectory(prefix="pneumo-bias-grid-") as scratch:
        grid = run_bias_grid(config, out, Path(scratch))
    console.print(f"Report: {write_grid_report(grid, out)}")


def show_progress_of(logger_name: str) -> None:
    """The experiment logs each phase (phantoms, training, audit) and its duration."""
    from rich.logging import RichHandler

    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.INFO)
    logger.addHandler(RichHandler(console=console, show_path=False, show_level=False))


def register_commands(app: typer.Typer) -> None:
    app.command("audit")(audit)
    app.command("bias-experiment")(bias_experiment)
    app.command("bias-grid")(bias_grid)
