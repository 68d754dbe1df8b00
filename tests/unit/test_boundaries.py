"""Architecture rules that keep images slim and start-up fast."""

from __future__ import annotations

import ast
import os
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


# A tiny artifact saved, loaded as the worker loads it, and asked for a prediction and its maps.
SERVE_ONE_FILM = """
import tempfile, pathlib, numpy
import worker.serving.celery_app, worker.serving.tasks
from shared.imaging import PreprocessParams
from shared.model_card import ModelCard
from worker.model.architecture import Architecture, build_classifier
from worker.model.artifact import save_artifact
from worker.model.runtime import ModelRuntime
directory = pathlib.Path(tempfile.mkdtemp())
card = ModelCard(name="probe", version="0", synthetic=True,
                 preprocessing=PreprocessParams(image_size=32))
architecture = Architecture(image_size=32, block_filters=(4, 8, 8, 8))
save_artifact(build_classifier(architecture), card, directory)
[prediction] = ModelRuntime.from_directory(directory).predict(numpy.zeros((1, 32, 32), numpy.uint8))
assert prediction.maps
"""


def test_serving_runs_without_the_training_libraries() -> None:
    """The worker images install `.[worker]` alone: serving must not need, nor even try to
    import, matplotlib, scipy or scikit-learn (Keras tries some of them and does without).
    TensorFlow's image, that is: JAX itself needs scipy, so `.[worker-jax]` has it anyway."""
    probe = subprocess.run(
        [sys.executable, "-m", "tests.support.uninstalled", "matplotlib,scipy,sklearn",
         SERVE_ONE_FILM],
        cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]


def test_the_worker_app_without_its_tasks_loads_no_model_libraries() -> None:
    """The healthcheck's `celery -A worker.serving.celery_app inspect ping` builds the app;
    the tasks, and with them Keras, come only when a worker finalizes it."""
    loaded = modules_loaded_by("import worker.serving.celery_app as module; module.app")
    assert "celery" in loaded and not {"tensorflow", "keras", "jax"} & loaded


def test_importing_the_services_reads_no_settings() -> None:
    """Settings are read when a process starts serving, not on import: with a PNEUMO_
    variable `Settings` refuses, the gateway and the worker still import, reading nothing."""
    probe = (
        "import gateway.app, worker.serving.celery_app, worker.serving.tasks; "
        "from shared.config import get_settings; "
        "assert get_settings.cache_info().currsize == 0; "
        "print('imported', flush=True); "
        "get_settings()"
    )
    environment = {**os.environ, "PNEUMO_BATCH_SIZE": "sixteen"}
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=environment,
                         capture_output=True, text=True)  # fmt: skip
    # Only the last statement, the explicit read, fails, and it names the variable.
    assert run.stdout == "imported\n", run.stderr[-3000:]
    assert run.returncode != 0
    assert "validation error for Settings\nbatch_size" in run.stderr, run.stderr[-3000:]


ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "putenv", "unsetenv"}
SETTINGS_READERS = {"Settings", "get_settings"}


def import_time_environment_uses(tree: ast.AST) -> list[int]:
    """Lines that touch the environment or read settings when the module is imported: outside
    function bodies (decorators and default values run on import, so they count)."""
    lines = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending += [*node.decorator_list, *node.args.defaults]
            pending += [default for default in node.args.kw_defaults if default]
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in ENVIRONMENT_NAMES]
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in SETTINGS_READERS:
            lines.append(node.lineno)
        pending += ast.iter_child_nodes(node)
    return sorted(lines)


def test_no_module_but_the_settings_reads_the_environment_on_import() -> None:
    sources = [
        path
        for package in ("shared", "gateway", "worker", "client", "bench")
        for path in (REPO_ROOT / package).rglob("*.py")
    ]
    offenders = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in sources
        if not path.is_relative_to(REPO_ROOT / "shared" / "config")
        and (lines := import_time_environment_uses(ast.parse(path.read_text())))
    }
    assert offenders == {}
    # The check sees what it looks for.
    assert import_time_environment_uses(ast.parse("import os\nA = os.environ.get('A')")) == [2]
    assert import_time_environment_uses(ast.parse("def f():\n    return os.getenv('A')")) == []
