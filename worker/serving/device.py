"""Per-process accelerator and thread-pool set-up, done once before the model is built.

GPU: TensorFlow must not grab all device memory up front (several processes may share a
card, and JAX preallocates 75 % unless told otherwise). CPU: one model call runs at a time, so
intra-op threads get every core and inter-op parallelism stays small.
"""

from __future__ import annotations

import logging
import os

import keras

from shared.config import Settings

log = logging.getLogger(__name__)


def configure_device(settings: Settings) -> dict[str, object]:
    """Apply the settings to the active Keras backend; returns what was chosen, for the logs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        chosen = _configure_tensorflow(settings)
    else:
        chosen = _configure_jax()
    chosen |= {"backend": backend, "mixed_precision": settings.mixed_precision,
               "xla": settings.xla}  # fmt: skip
    log.info("Device set-up: %s", chosen)
    return chosen


def _configure_tensorflow(settings: Settings) -> dict[str, object]:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    intra = settings.intra_op_threads or (os.cpu_count() or 1)
    inter = settings.inter_op_threads or 2
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {"gpus": len(gpus), "intra_op_threads": intra, "inter_op_threads": inter}


def share_the_gpu_with_other_processes() -> None:
    """JAX's GPU client takes 75 % of the card when it starts unless told otherwise, so a second
    process on the card (another worker, or the benchmark measuring the model beside one) fails
    its first allocation; a worker needs a few hundred MiB. The client starts at the first device
    query or model build, not at import, so call this before either. An operator's own setting
    wins. (TensorFlow's equivalent, memory growth, is set in `_configure_tensorflow`.)"""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _configure_jax() -> dict[str, object]:
    share_the_gpu_with_other_processes()
    import jax

    return {"devices": [str(device) for device in jax.devices()]}
