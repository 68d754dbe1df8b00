"""Our overrides of kombu and celery-batches internals run only on the versions they were
written for: the decision, with the installed versions passed in."""

from __future__ import annotations

import re
import tomllib

import pytest

from shared.config import Settings
from tests.support.processes import REPO_ROOT
from worker.serving.overrides import (
    BATCHING,
    OVERRIDES,
    TRANSPORT,
    OverridesRefused,
    decide_overrides,
    installed_versions,
)

WRITTEN_FOR = {override.distribution: override.written_for for override in OVERRIDES}


def test_each_override_is_written_for_the_version_pyproject_pins_and_that_is_installed() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requirements = [
        requirement
        for extra in project["project"]["optional-dependencies"].values()
        for requirement in extra
    ]
    for override in OVERRIDES:
        pins = {pin for pin in requirements if re.match(rf"{override.distribution}\b", pin)}
        assert pins == {f"{override.distribution}=={override.written_for}"}, pins
    assert installed_versions() == WRITTEN_FOR


@pytest.mark.parametrize("mode", ["auto", "require"])
def test_matching_versions_run_both_overrides_without_a_word(mode: str) -> None:
    decision = decide_overrides(Settings(library_overrides=mode), WRITTEN_FOR)
    assert (decision.transport, decision.batching, decision.warnings) == (True, True, ())


def test_another_kombu_falls_back_to_kombus_transport_with_a_warning_naming_both_versions() -> None:
    installed = WRITTEN_FOR | {"kombu": "5.8.1"}
    decision = decide_overrides(Settings(), installed)
    assert (decision.transport, decision.batching) == (False, True)
    (warning,) = decision.warnings
    assert TRANSPORT.module in warning and "5.8.1" in warning and "5.7.0" in warning


def test_a_missing_or_other_celery_batches_falls_back_to_its_own_batches() -> None:
    for version, named in ((None, "no celery-batches"), ("0.12", "celery-batches 0.12")):
        decision = decide_overrides(Settings(), WRITTEN_FOR | {"celery-batches": version})
        assert (decision.transport, decision.batching) == (True, False)
        (warning,) = decision.warnings
        assert BATCHING.module in warning and named in warning and "0.11" in warning


def test_multi_pop_asked_for_explicitly_is_warned_about_when_the_transport_falls_back() -> None:
    installed = WRITTEN_FOR | {"kombu": "5.8.1"}
    explicit = decide_overrides(Settings(broker_multi_pop=True), installed)
    assert len(explicit.warnings) == 2 and "PNEUMO_BROKER_MULTI_POP" in explicit.warnings[1]
    # "auto" asks only where it can be had: the fallback warning says enough.
    assert len(decide_overrides(Settings(broker_multi_pop="auto"), installed).warnings) == 1


def test_require_refuses_another_version_with_what_to_do() -> None:
    installed = {"kombu": "5.8.1", "celery-batches": "0.11"}
    with pytest.raises(OverridesRefused) as refusal:
        decide_overrides(Settings(library_overrides="require"), installed)
    message = str(refusal.value)
    assert "kombu 5.8.1" in message and "kombu==5.7.0" in message
    assert "PNEUMO_LIBRARY_OVERRIDES=auto" in message and "celery-batches==" not in message


def test_off_runs_the_libraries_own_code_whatever_is_installed() -> None:
    for installed in (WRITTEN_FOR, {"kombu": "5.8.1", "celery-batches": None}):
        decision = decide_overrides(Settings(library_overrides="off"), installed)
        assert (decision.transport, decision.batching, decision.warnings) == (False, False, ())
    explicit = decide_overrides(Settings(library_overrides="off", broker_multi_pop=True), {})
    assert len(explicit.warnings) == 1 and "PNEUMO_BROKER_MULTI_POP" in explicit.warnings[0]


def test_an_unknown_mode_is_refused_when_settings_are_read() -> None:
    with pytest.raises(ValueError, match="library_overrides"):
        Settings(library_overrides="sometimes")


def test_rabbitmq_runs_kombus_own_transport_whatever_kombu_is_installed() -> None:
    """With an AMQP broker the Redis transport's override does not apply: never enabled, and a
    kombu of another version neither warns nor stops a worker that requires its overrides."""
    amqp = {"broker_url": "amqp://guest:guest@rabbitmq:5672//"}
    other_kombu = WRITTEN_FOR | {"kombu": "5.8.0"}
    for installed in (WRITTEN_FOR, other_kombu):
        decision = decide_overrides(Settings(**amqp, library_overrides="require"), installed)
        assert (decision.transport, decision.batching, decision.warnings) == (False, True, ())
    explicit_multi_pop = decide_overrides(Settings(**amqp, broker_multi_pop=True), WRITTEN_FOR)
    assert explicit_multi_pop.warnings == ()  # a Redis-only setting, not in force here
