"""Architecture rules that keep images slim and start-up fast."""

from __future__ import annotations

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
