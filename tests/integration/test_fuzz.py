"""Fuzzing: schemathesis against our own OpenAPI spec, and a malformed-image corpus over HTTP.

Schemathesis drives the ASGI app in-process (real Redis, real worker), a bounded number of
generated requests per operation: no answer may be a 5xx, and every answer must match the
documented status codes, content types and schemas. Every operation is fuzzed even after
another fails, so one run reports every finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.config import Settings
from tests.support.corpus import OK, corpus
from tests.support.processes import WorkerProcess

pytestmark = pytest.mark.slow

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Examples per operation: valid requests, then requests that break the schema. With API keys
# on, generated keys are wrong, so that pass mostly proves every refusal is a documented 401.
CONFIGURATIONS = {
    "open": ({}, {POSITIVE: 20, NEGATIVE: 10}),
    "api_keys": ({"api_keys": ("fuzz-key",), "rate_limit_per_minute": 100_000}, {POSITIVE: 5}),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(params=sorted(CONFIGURATIONS))
def fuzz_target(
    request: pytest.FixtureRequest, settings: Settings, worker: WorkerProcess
) -> Iterator[tuple[object, dict]]:
    from schemathesis.python import asgi

    from gateway.app import create_app

    changes, budget = CONFIGURATIONS[request.param]
    yield create_app(settings.model_copy(update=changes)), budget
    asgi.shutdown_lifespans()  # close its Redis client while the loop that made it still runs


def fuzz_operation(operation, mode, examples: int, stats: Counter) -> None:
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case) -> None:
        response = case.call()
        stats[f"examples_{mode.value}"] += 1
        stats[f"status_{response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def modes_for(operation, budget: dict) -> list[schemathesis.GenerationMode]:
    """Negative cases need something that can be invalid: a body or a typed query parameter."""
    return [
        mode for mode in budget if mode is POSITIVE or len(operation.body) or len(operation.query)
    ]


def describe(error: BaseException) -> str:
    parts = [str(error), *(str(inner) for inner in getattr(error, "exceptions", ()))]
    return "\n".join(parts)[:3000]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_target) -> None:
    app, budget = fuzz_target
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    stats: Counter = Counter()
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        stats["operations"] += 1
        for mode in modes_for(operation, budget):
            try:
                fuzz_operation(operation, mode, budget[mode], stats)
            except (Exception, FailureGroup) as error:  # collected: every operation gets fuzzed
                failures[f"{operation.label} ({mode.value})"] = describe(error)
    figures = " ".join(f"{name}={count}" for name, count in sorted(stats.items()))
    print(f"\nschemathesis: {figures} failures={len(failures)}")
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    assert stats["operations"] >= 10


@pytest.mark.parametrize("name", sorted(corpus()))
def test_malformed_corpus_over_http(api: TestClient, name: str) -> None:
    data, expected = corpus()[name]
    response = api.post("/v1/jobs", files={"file": ("scan", data)})
    if expected != OK:
        assert (response.status_code, response.json()["error"]["code"]) == expected
        return
    assert response.status_code == 202, response.text
    done = api.get(response.headers["Location"], params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
