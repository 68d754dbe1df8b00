"""Architecture rules that keep images slim and start-up fast."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import REPO_ROOT


def modules_loaded_by(statement: str) -> set[str]:
    probe = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_gateway_never_imports_tensorflow_or_keras() -> None:
    loaded = modules_loaded_by("import gateway.app")
    assert "fastapi" in loaded
    assert not {"tensorflow", "keras", "jax"} & loaded


def test_shared_imports_neither_ml_nor_web_frameworks() -> None:
    loaded = modules_loaded_by(
        "import shared.config, shared.schemas, shared.store, shared.imaging, shared.queue, "
        "shared.model_card"
    )
    assert not {"tensorflow", "keras", "jax", "fastapi"} & loaded


def test_importing_the_worker_loads_no_model() -> None:
    loaded = modules_loaded_by(
        "import worker.serving.tasks, worker.serving.context; "
        "assert worker.serving.context.get_context.cache_info().currsize == 0"
    )
    assert "worker.serving.tasks" in loaded
