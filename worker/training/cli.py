"""The model-making commands of `pneumo`: synth, train, evaluate, train-demo.

TensorFlow, Keras and matplotlib are imported inside the commands, so `pneumo --help` and the
service commands start instantly. The commands are thin: the work lives in worker.training.datasets,
worker.training.trainer, worker.training.evaluation and worker.training.reports.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

console = Console()

DEMO_NAME, DEMO_VERSION = "pneumo-cnn-phantom-demo", "1.0.0"

Seed = Annotated[int, typer.Option(help="Seeds the data split, weights and augmentation.")]
CacheDir = Annotated[
    Path | None, typer.Option(help="Decoded-image cache (default: DATA_DIR/.cache).")
]
# Shared with the audit commands, which read models and splits the same way.
ModelDir = Annotated[Path, typer.Option(help="Model artifact directory.")]
Split = Annotated[str, typer.Option(help="Which split of the data: train, val or test.")]
Difficulty = Annotated[
    Literal["easy", "standard", "hard"],
    typer.Option(help="Phantom benchmark level (docs/training.md): what films carry."),
]


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Where the Kermany-layout phantoms go.")],
    count: Annotated[int, typer.Option(min=4)] = 600,
    size: Annotated[int, typer.Option(min=64, help="Side of each phantom in pixels.")] = 256,
    seed: Seed = 0,
    prevalence: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.6,
    artifact: Annotated[
        str | None, typer.Option(help="border_band, padding or corner_marker")
    ] = None,
    artifact_correlation: Annotated[
        float, typer.Option(help="1 = artefact only on PNEUMONIA, 0 = independent of label.")
    ] = 0.0,
    max_images_per_patient: Annotated[
        int | None,
        typer.Option(min=1, help="Each patient gets 1..this many images (default: the level's)."),
    ] = None,
    image_format: Annotated[str, typer.Option(help="png, or jpeg as Kermany ships.")] = "png",
    difficulty: Difficulty = "standard",
    label_noise: Annotated[
        float,
        typer.Option(min=0.0, max=0.49, help="Fraction of patients filed under the wrong class."),
    ] = 0.0,
    held_out_site: Annotated[
        int | None, typer.Option(min=0, max=1, help="Put every patient of this site in test.")
    ] = None,
) -> None:
    """Synthetic radiographs with lung and lesion masks, in the Kermany folder layout."""
    from worker.phantoms.kermany import write_kermany_dataset

    manifest = write_kermany_dataset(
        out_dir,
        count=count,
        size=size,
        seed=seed,
        prevalence=prevalence,
        split_fractions=(0.7, 0.1, 0.2),
        artifact=artifact,
        artifact_correlation=artifact_correlation,
        image_format=image_format,
        images_per_patient=None if max_images_per_patient is None else (1, max_images_per_patient),
        difficulty=difficulty,
        label_noise=label_noise,
        held_out_site=held_out_site,
    )
    counts = manifest.get("counts", manifest)
    console.print(f"Wrote {count} phantoms to {out_dir}: {counts}")


def train(
    data: Annotated[Path, typer.Option(help="Kermany-layout folder or MedMNIST .npz file.")],
    out: Annotated[Path, typer.Option(help="Model artifact directory to write.")],
    epochs: Annotated[int, typer.Option(min=1)] = 15,
    image_size: Annotated[int, typer.Option(min=32, max=1024)] = 128,
    seed: Seed = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: float = 1e-3,
    patience: Annotated[int, typer.Option(help="Epochs without val AUC gain before stopping.")] = 4,
    target_sensitivity: Annotated[float, typer.Option(min=0.5, max=1.0)] = 0.95,
    val_fraction: Annotated[float, typer.Option(min=0.05, max=0.5)] = 0.15,
    name: str = "pneumo-cnn",
    version: str = "0.1.0",
    synthetic: Annotated[
        bool | None, typer.Option(help="Default: true when DATA holds a phantom manifest.")
    ] = None,
    cache_dir: CacheDir = None,
    fit: Annotated[
        Literal["letterbox", "squash"] | None,
        typer.Option(
            help="How a film becomes square (default: the fit measured best, "
            "worker/training/fit_choice.py)."
        ),
    ] = None,
) -> None:
    """Train from scratch: model.keras, model.json, MODEL_CARD.md, history, split manifest."""
    from worker.model.architecture import Architecture
    from worker.training.trainer import ModelIdentity, TrainingConfig

    config = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        seed=seed,
        target_sensitivity=target_sensitivity,
        architecture=Architecture(image_size=image_size),
    )
    identity = ModelIdentity(name=name, version=version, synthetic=bool(synthetic))
    run_training(
        data,
        out,
        config,
        identity,
        val_fraction,
        cache_dir,
        detect_synthetic=synthetic is None,
        fit=fit,
    )


def evaluate(
    model: ModelDir,
    data: Annotated[Path, typer.Option(help="Kermany-layout folder or MedMNIST .npz file.")],
    out: Annotated[Path, typer.Option(help="Report directory to write.")],
    split: Split = "test",
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for CIs.")] = 1000,
    seed: Seed = 0,
    update_card: Annotated[bool, typer.Option(help="Record the metrics in model.json.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """metrics.json (with 95% CIs), ROC/PR/confusion/reliability/training PNGs and report.md."""
    run_evaluation(model, data, out, split, bootstrap, seed, update_card, cache_dir)


def train_demo(
    out: Annotated[Path, typer.Option(help="Where the demo artifact goes.")] = Path("models/demo"),
    count: Annotated[int, typer.Option(min=100, help="Phantoms to generate (256 px).")] = 1600,
    # standard phantoms: validation AUC still rose at epoch 6 of 8 (0.889 -> 0.899 at 7)
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    seed: Seed = 0,
    difficulty: Difficulty = "standard",
) -> None:
    """Retrain the shipped demo model: phantoms -> train (128 px) -> test-split report."""
    from worker.model.architecture import Architecture
    from worker.phantoms.kermany import write_kermany_dataset
    from worker.training.trainer import ModelIdentity, TrainingConfig

    config = TrainingConfig(epochs=epochs, patience=3, seed=seed, architecture=Architecture())
    identity = ModelIdentity(name=DEMO_NAME, version=DEMO_VERSION, synthetic=True)
    with tempfile.TemporaryDirectory(prefix="pneumo-phantoms-") as scratch:
        data = Path(scratch) / "chest_xray"
        console.print(f"Generating {count} phantoms in {data} ...")
        write_kermany_dataset(
            data,
            count=count,
            size=256,
            seed=seed,
            prevalence=0.6,
            split_fractions=(0.75, 0.05, 0.2),
            artifact=None,
            artifact_correlation=0.0,
            image_format="png",
            difficulty=difficulty,
        )
        run_training(data, out, config, identity, validation_fraction=0.15, cache_dir=None)
        run_evaluation(out, data, out / "report", "test", 1000, seed, True, None)


def run_training(
    data, out, config, identity, validation_fraction, cache_dir, detect_synthetic=False, fit=None
) -> None:
    """Load, train, save; with detect_synthetic, a phantom folder marks the model synthetic."""
    from dataclasses import replace

    from worker.training.datasets import load_dataset
    from worker.training.trainer import train_model, training_preprocessing

    size = config.architecture.image_size
    params = training_preprocessing(size, fit) if fit else training_preprocessing(size)
    console.print(f"Loading {data} at {params.image_size} px (decoded once, then cached) ...")
    dataset = load_dataset(
        data,
        params,
        splits=("train", "val"),
        validation_fraction=validation_fraction,
        seed=config.seed,
        cache_dir=cache_dir,
    )
    if detect_synthetic:
        identity = replace(identity, synthetic=dataset.manifest["source"].get("synthetic", False))
    for split, part in dataset.splits.items():
        console.print(f"  {split}: {len(part.labels)} images, {int(part.labels.sum())} PNEUMONIA")
    with progress_callback(config.epochs, dataset, config.batch_size) as callback:
        card = train_model(dataset, params, out, config, identity, [callback])
    show_training_summary(card, out)


def run_evaluation(model_dir, data, out, split, resamples, seed, update_card, cache_dir) -> None:
    from worker.training.evaluation import evaluate_model, record_in_card
    from worker.training.histogram_baseline import histogram_baseline_for
    from worker.training.reports import metrics_table, write_model_card_markdown, write_report

    evaluation = evaluate_model(
        model_dir, data, split=split, resamples=resamples, seed=seed, cache_dir=cache_dir
    )
    evaluation.summary["histogram_baseline"] = histogram_baseline_for(
        model_dir, data, split, cache_dir
    )
    report = write_report(evaluation, model_dir, out)
    model = evaluation.summary["model"]
    title = f"{model['name']} {model['version']} on {split} ({evaluation.summary['images']} images)"
    console.print(metrics_table(evaluation.summary, title))
    baseline = evaluation.summary["histogram_baseline"]
    console.print(
        "Histogram baseline (logistic regression on intensity histograms): "
        + (
            "no training split of both classes"
            if baseline is None
            else f"ROC-AUC {baseline['roc_auc']:.3f}"
        )  # fmt: skip
    )
    if update_card:
        write_model_card_markdown(record_in_card(model_dir, evaluation), model_dir)
    console.print(f"Report: {report}")


def show_training_summary(card, out: Path) -> None:
    validation = card.metrics["validation"]
    console.print(
        f"Saved {card.name} {card.version} to {out} (best epoch {card.training['best_epoch']} of "
        f"{card.training['epochs_run']}, {card.training['seconds']:.0f} s)\n"
        f"  validation ROC-AUC {validation['roc_auc']:.3f}, calibration slope "
        f"{card.calibration.slope:.3f} intercept {card.calibration.intercept:+.3f} "
        f"(guard: {card.calibration.guard}), "
        f"threshold {card.threshold.value:.4f} -> sensitivity "
        f"{card.threshold.validation_sensitivity:.3f}, specificity "
        f"{card.threshold.validation_specificity:.3f}"
    )


def progress_callback(epochs: int, dataset, batch_size: int):
    """A rich progress bar over all training steps, showing the last validation AUC."""
    import math

    from worker.training.progress import RichProgressCallback

    steps = math.ceil(len(dataset.splits["train"].labels) / batch_size)
    return RichProgressCallback(console, epochs, steps)


def register_commands(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("train-demo")(train_demo)
