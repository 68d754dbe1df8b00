"""One backend's answers for a test to compare with another's: KERAS_BACKEND is read when keras
is imported, so each backend runs in its own process.

    KERAS_BACKEND=jax python -m tests.support.backend_outputs MODEL_DIR IMAGES.npy OUT_DIR

writes OUT_DIR/outputs.npz (probabilities (N,), maps (N, M, h, w) in METHOD_NAMES order) and
OUT_DIR/traces.json (the batch sizes the runtime's explainer was traced for after its warm-up,
and after one more predict of every batch size up to MAX_BATCH).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MAX_BATCH = 4


def write_outputs(model_dir: Path, images_path: Path, out_dir: Path) -> None:
    from worker.model.gradcam import METHOD_NAMES
    from worker.model.runtime import ModelRuntime

    runtime = ModelRuntime.from_directory(model_dir, max_batch=MAX_BATCH)
    runtime.warm_up()
    after_warm_up = list(runtime.traced_batch_sizes)
    images = np.load(images_path)
    predictions = runtime.predict(images)
    for count in range(1, MAX_BATCH + 1):
        runtime.predict(images[:count])
    np.savez(
        out_dir / "outputs.npz",
        probabilities=np.array([prediction.probability for prediction in predictions]),
        maps=np.stack([[p.maps[name] for name in METHOD_NAMES] for p in predictions]),
    )
    traces = {"after_warm_up": after_warm_up, "after_every_size": runtime.traced_batch_sizes}
    (out_dir / "traces.json").write_text(json.dumps(traces))


if __name__ == "__main__":
    write_outputs(*(Path(argument) for argument in sys.argv[1:4]))
