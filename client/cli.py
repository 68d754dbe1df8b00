"""`pneumo`: one command line for people who use, operate and retrain the service.

Commands that need TensorFlow import it inside their bodies, so `pneumo --help` and the HTTP
commands start instantly.
"""

from __future__ import annotations

import typer

from worker.cli import register_ml_commands

app = typer.Typer(
    name="pneumo",
    help="Chest X-ray triage: submit radiographs, run the service, retrain and audit the model.",
    no_args_is_help=True,
    add_completion=False,
)
register_ml_commands(app)
