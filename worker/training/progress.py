"""A rich progress bar for `model.fit`, with one line of metrics per epoch."""

from __future__ import annotations

import math

import keras
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgressCallback(keras.callbacks.Callback):
    """Use as a context manager around `fit` so the bar is always closed, even on errors."""

    def __init__(self, console: Console, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(f"epoch 1/{epochs}", total=epochs * steps_per_epoch)

    def __enter__(self) -> RichProgressCallback:
        self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.progress.advance(self.task)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        done = epoch + 1
        summary = " ".join(
            f"{key} {logs.get(key, math.nan):.4f}" for key in ("loss", "auc", "val_loss", "val_auc")
        )
        self.progress.console.print(f"epoch {done}/{self.epochs}: {summary}")
        self.progress.update(
            self.task,
            completed=done * self.steps_per_epoch,
            description=f"epoch {min(done + 1, self.epochs)}/{self.epochs}",
        )
