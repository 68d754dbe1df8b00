"""The only backend-specific code: one compiled call returning logits, explanation maps and the
pooled features the out-of-distribution score reads (`worker.model.ood`).

Grad-CAM explains the logit of the class returned for each image: +logit where the prediction
is PNEUMONIA, -logit where it is NORMAL. The sigmoid is never differentiated, because its
gradient vanishes exactly where the model is confident.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from worker.model.gradcam import all_maps

# images (B, S, S, 1) uint8, logit threshold -> (logits (B,), maps (B, M, h, w), pooled (B, C))
Explainer = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray]]
# Called with the batch size each time the backend traces a new program (None: any size).
TraceListener = Callable[[int | None], None]


def make_explainer(
    features: keras.Model,
    head: keras.Model,
    jit_compile: bool = False,
    on_trace: TraceListener = lambda batch_size: None,
) -> Explainer:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_explainer(features, head, jit_compile, on_trace)
    if backend == "jax":
        return _jax_explainer(features, head, on_trace)
    raise RuntimeError(f"KERAS_BACKEND={backend!r} is not supported; use tensorflow or jax.")


def _tensorflow_explainer(features, head, jit_compile: bool, on_trace: TraceListener) -> Explainer:
    import tensorflow as tf

    size = features.input.shape[1]
    signature = [
        tf.TensorSpec([None, size, size, 1], tf.uint8),
        tf.TensorSpec([], tf.float32),
    ]

    # A fixed signature with a free batch axis: one trace for the process's lifetime.
    @tf.function(input_signature=signature, jit_compile=jit_compile)
    def explain(images, logit_threshold):
        on_trace(images.shape[0])  # Python runs here only while tracing
        feature_maps = features(images, training=False)
        with tf.GradientTape() as tape:
            tape.watch(feature_maps)
            logits = tf.cast(head(feature_maps, training=False)[:, 0], tf.float32)
            signs = tf.stop_gradient(tf.where(logits >= logit_threshold, 1.0, -1.0))
            explained = tf.reduce_sum(logits * signs)
        gradients = tape.gradient(explained, feature_maps)
        pooled = tf.reduce_mean(tf.cast(feature_maps, tf.float32), axis=[1, 2])
        return logits, all_maps(feature_maps, gradients), pooled

    def call(images: np.ndarray, logit_threshold: float):
        logits, maps, pooled = explain(images, np.float32(logit_threshold))
        return logits.numpy(), maps.numpy(), pooled.numpy()

    return call


def _jax_explainer(features, head, on_trace: TraceListener) -> Explainer:
    import jax
    import jax.numpy as jnp

    def explain(feature_state, head_state, images, logit_threshold):
        on_trace(images.shape[0])  # jit traces, and compiles, once per batch shape
        feature_maps, _ = features.stateless_call(*feature_state, images, training=False)

        def head_logits(maps):
            outputs, _ = head.stateless_call(*head_state, maps, training=False)
            return outputs[:, 0].astype(jnp.float32)

        logits, pullback = jax.vjp(head_logits, feature_maps)
        signs = jnp.where(logits >= logit_threshold, 1.0, -1.0)
        (gradients,) = pullback(signs)
        pooled = jnp.mean(feature_maps.astype(jnp.float32), axis=(1, 2))
        return logits, all_maps(feature_maps, gradients), pooled

    compiled = jax.jit(explain)
    feature_state = _state(features)
    head_state = _state(head)

    def call(images: np.ndarray, logit_threshold: float):
        logits, maps, pooled = compiled(
            feature_state, head_state, images, np.float32(logit_threshold)
        )
        return np.asarray(logits), np.asarray(maps), np.asarray(pooled)

    return call


def _state(model: keras.Model) -> tuple[list, list]:
    return (
        [variable.value for variable in model.trainable_variables],
        [variable.value for variable in model.non_trainable_variables],
    )
