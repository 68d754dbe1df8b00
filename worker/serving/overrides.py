"""Which of our overrides of library internals the worker runs, checked once at start-up.

`worker.serving.transport` overrides private methods of kombu's Redis transport, and
`worker.serving.batching` private methods of celery-batches' `Batches`. Private methods change
without notice between releases, so each override runs only on the library version it was
written for (the one pyproject.toml pins). On any other version the worker says so and runs
the library's own code (`PNEUMO_LIBRARY_OVERRIDES=auto`), or refuses to start (`require`);
`off` always runs the libraries' own code. The transport's override is for a Redis broker only:
with RabbitMQ (`PNEUMO_BROKER_URL=amqp://...`) kombu's own AMQP transport runs, needing none.

The libraries' own code delivers and acknowledges jobs the same way, only at a higher cost:
kombu's transport fetches one message per Redis round trip (no BLMPOP) and writes each
acknowledgement in a transaction of its own; celery-batches forms a batch on its timer or
every `flush_every` messages instead of as soon as a batch returns, so under load small
batches queue behind each other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from shared.config import Settings
from shared.queue import uses_amqp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Override:
    module: str  # ours
    distribution: str  # the library whose private methods it overrides
    written_for: str  # the library version it was written and tested against


TRANSPORT = Override("worker.serving.transport", "kombu", "5.7.0")
BATCHING = Override("worker.serving.batching", "celery-batches", "0.11")
OVERRIDES = (TRANSPORT, BATCHING)


@dataclass(frozen=True)
class OverridesDecision:
    transport: bool  # worker.serving.transport, else kombu's own Redis transport
    batching: bool  # worker.serving.batching.AdaptiveBatches, else celery-batches' Batches
    warnings: tuple[str, ...] = ()


class OverridesRefused(RuntimeError):
    """`PNEUMO_LIBRARY_OVERRIDES=require`, and a library is not the version its override
    was written for."""


def installed_versions() -> dict[str, str | None]:
    """The installed version of each overridden library; None where it is not installed."""
    versions: dict[str, str | None] = {}
    for override in OVERRIDES:
        try:
            versions[override.distribution] = metadata.version(override.distribution)
        except metadata.PackageNotFoundError:
            versions[override.distribution] = None
    return versions


def decide_overrides(settings: Settings, installed: Mapping[str, str | None]) -> OverridesDecision:
    """Each override where the setting allows it and its library is the version it was written
    for; `installed` maps each library to its version (`installed_versions()`)."""
    redis_broker = not uses_amqp(settings)
    applicable = OVERRIDES if redis_broker else (BATCHING,)
    if settings.library_overrides == "off":
        enabled: set[Override] = set()
        warnings = []
    else:
        mismatched = [
            override
            for override in applicable
            if installed.get(override.distribution) != override.written_for
        ]
        if mismatched and settings.library_overrides == "require":
            raise OverridesRefused(refusal(mismatched, installed))
        enabled = set(applicable) - set(mismatched)
        warnings = [fallback_warning(override, installed) for override in mismatched]
    if redis_broker and TRANSPORT not in enabled and settings.broker_multi_pop is True:
        warnings.append(
            "PNEUMO_BROKER_MULTI_POP=true is not honoured: kombu's own transport fetches one "
            "message per Redis round trip."
        )
    return OverridesDecision(TRANSPORT in enabled, BATCHING in enabled, tuple(warnings))


def report(decision: OverridesDecision) -> None:
    """Log what runs, once the worker's logging is set up."""
    running = [
        override.module
        for override, enabled in ((TRANSPORT, decision.transport), (BATCHING, decision.batching))
        if enabled
    ]
    log.info("Library overrides running: %s.", ", ".join(running) or "none (the libraries' own)")
    for warning in decision.warnings:
        log.warning(warning)


def _installed(override: Override, installed: Mapping[str, str | None]) -> str:
    version = installed.get(override.distribution)
    return f"{override.distribution} {version}" if version else f"no {override.distribution}"


def fallback_warning(override: Override, installed: Mapping[str, str | None]) -> str:
    stock = "kombu's own Redis transport" if override is TRANSPORT else "celery-batches' Batches"
    return (
        f"{override.module} was written for {override.distribution} {override.written_for}, "
        f"but {_installed(override, installed)} is installed: running {stock} instead, "
        f"slower per job. Install {override.distribution}=={override.written_for} "
        "(pyproject.toml pins it) to run the override again."
    )


def refusal(mismatched: list[Override], installed: Mapping[str, str | None]) -> str:
    found = "; ".join(
        f"{override.module} was written for {override.distribution} {override.written_for}, "
        f"but {_installed(override, installed)} is installed"
        for override in mismatched
    )
    pins = " ".join(f"{override.distribution}=={override.written_for}" for override in mismatched)
    return (
        f"PNEUMO_LIBRARY_OVERRIDES=require: {found}. Install {pins} (pyproject.toml pins them), "
        "or set PNEUMO_LIBRARY_OVERRIDES=auto to run the libraries' own code instead."
    )
