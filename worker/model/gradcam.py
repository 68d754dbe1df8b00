"""Class-activation maps from a feature map and the gradient of the explained logit.

Each method is one small function over `keras.ops`, so it runs inside the compiled
predict-and-explain call on any backend. Shapes: feature maps and gradients are (B, h, w, C);
every map returned is (B, h, w) in [0, 1].
"""

from __future__ import annotations

from keras import ops

EPSILON = 1e-7


def gradcam_weights(feature_maps, gradients):
    """Grad-CAM (Selvaraju et al. 2017): channel weight = spatial mean of the gradient."""
    return ops.mean(gradients, axis=(1, 2), keepdims=True)


def gradcam_plus_plus_weights(feature_maps, gradients):
    """Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted per pixel.

    Uses the closed form for an exponential of the score, as the paper and pytorch-grad-cam do.
    """
    squared = ops.square(gradients)
    cubed = squared * gradients
    activation_sums = ops.sum(feature_maps, axis=(1, 2), keepdims=True)
    denominator = 2.0 * squared + activation_sums * cubed
    alphas = squared / ops.where(ops.abs(denominator) > EPSILON, denominator, EPSILON)
    alphas = ops.where(gradients != 0, alphas, ops.zeros_like(alphas))
    return ops.sum(ops.relu(gradients) * alphas, axis=(1, 2), keepdims=True)


def weighted_map(feature_maps, weights):
    return ops.relu(ops.sum(weights * feature_maps, axis=-1))


def hirescam(feature_maps, gradients):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, no spatial pooling,
    so the map provably reflects the locations the score depends on."""
    return ops.relu(ops.sum(gradients * feature_maps, axis=-1))


def normalise(maps):
    """Scale each map to [0, 1]; an all-zero map stays zero instead of becoming NaN."""
    peaks = ops.max(maps, axis=(1, 2), keepdims=True)
    return maps / (peaks + EPSILON)


METHODS = {
    "gradcam": lambda maps, grads: weighted_map(maps, gradcam_weights(maps, grads)),
    "gradcam++": lambda maps, grads: weighted_map(maps, gradcam_plus_plus_weights(maps, grads)),
    "hirescam": hirescam,
}
METHOD_NAMES = tuple(METHODS)


def all_maps(feature_maps, gradients):
    """(B, M, h, w): every method's normalised map, in METHOD_NAMES order, from one gradient."""
    feature_maps = ops.cast(feature_maps, "float32")
    gradients = ops.cast(gradients, "float32")
    return ops.stack(
        [normalise(METHODS[name](feature_maps, gradients)) for name in METHOD_NAMES], 1
    )
