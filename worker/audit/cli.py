"""`pneumo audit` and `pneumo bias-experiment`: thin commands over worker.audit.explanations
and worker.audit.bias.

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


def bias_experiment(
    out: Annotated[Path, typer.Option(help="Report directory (bias.json, report.md, ...).")],
    artifact: Annotated[
        str, typer.Option(help="border_band, padding or corner_marker")
    ] = "border_band",
    quick: Annotated[
        bool, typer.Option(help="Fewer phantoms and epochs (about a minute or two).")
    ] = False,
    ablation: Annotated[
        bool, typer.Option(help="Also train the fix painting only half the films.")
    ] = False,
    seed: int = 0,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep phantoms and models here (default: a temp folder).")
    ] = None,
) -> None:
    """Train on phantoms whose artefact marks PNEUMONIA, catch the shortcut with the audit,
    retrain with the fix (border trimming + artefact augmentation) and compare both."""
    import keras
    import tensorflow as tf

    from worker.audit.bias import QUICK, BiasConfig, run_bias_experiment
    from worker.audit.bias_report import comparison_table, write_bias_report
    from worker.phantoms.artefacts import ARTIFACTS

    if artifact not in ARTIFACTS:
        raise typer.BadParameter(
            f"--artifact must be one of {', '.join(ARTIFACTS)}, got {artifact!r}"
        )
    show_progress_of("worker.audit.bias")
    tf.config.experimental.enable_op_determinism()  # the committed numbers must be reproducible
    keras.utils.set_random_seed(seed)
    base = QUICK if quick else BiasConfig()
    config = replace(
        base, artifact=artifact, seed=seed, ablation_probability=0.5 if ablation else None
    )
    with tempfile.TemporaryDirectory(prefix="pneumo-bias-") as scratch:
        result = run_bias_experiment(config, out, work_dir or Path(scratch))
    report = write_bias_report(result, out)
    console.print(comparison_table(result.summary))
    console.print(f"Report: {report}")


def show_progress_of(logger_name: str) -> None:
    """The experiment logs each phase (phantoms, training, audit) and its duration."""
    from rich.logging import RichHandler

    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.INFO)
    logger.addHandler(RichHandler(console=console, show_path=False, show_level=False))


def register_commands(app: typer.Typer) -> None:
    app.command("audit")(audit)
    app.command("bias-experiment")(bias_experiment)
