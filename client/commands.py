"""The command groups `pneumo` borrows from the packages it ships beside.

Each group lives with the code it drives (the gateway, the serving worker, training, the audit)
and is added only where its dependencies are installed: checked with `find_spec`, which imports
nothing, so `pneumo --help` stays instant and a client-only install shows only what it can run.
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec

import typer

# (module with a `register_commands(app)`, the distributions that module's commands need)
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gateway.cli", ("fastapi", "uvicorn")),
    ("worker.serving.cli", ("celery_batches", "keras")),
    ("worker.training.cli", ("keras", "matplotlib")),
    ("worker.audit.cli", ("keras", "matplotlib", "scipy")),
)


def installed(module_names: tuple[str, ...]) -> bool:
    return all(find_spec(name) is not None for name in module_names)


def register_installed_commands(app: typer.Typer) -> list[str]:
    """Add every command group whose dependencies are installed; returns the groups added."""
    added = []
    for module_name, requirements in COMMAND_GROUPS:
        if installed(requirements):
            importlib.import_module(module_name).register_commands(app)
            added.append(module_name)
    return added
