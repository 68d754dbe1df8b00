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


def eigengradcam(feature_maps, gradients):
    """Eigen-Grad-CAM (pytorch-grad-cam, after Muhammad & Yeasin 2020): the first principal
    component of gradient x activation over the map's positions, signed to agree with the
    explained class's evidence.

    Why this one: the head begins with global average pooling, so a channel's gradient is the
    same at every position. HiResCAM's gradient x activation summed over channels is then
    Grad-CAM exactly, and LayerCAM on this layer (activations weighted by positive gradients)
    is nearly Grad-CAM++ (within 0.02 of the peak on the demo's films), since Grad-CAM++'s
    per-pixel weights tend to 1/2 as the gradients get small. Summing over channels weighs
    them by the gradient; the principal component weighs them by how they vary together
    across the film, a different map.
    """
    products = gradients * feature_maps
    height, width, channels = products.shape[1], products.shape[2], products.shape[3]
    positions = ops.reshape(products, (-1, height * width, channels))
    centred = positions - ops.mean(positions, axis=1, keepdims=True)
    _, _, right_vectors = ops.svd(centred, full_matrices=False)
    projection = ops.einsum("bpc,bc->bp", centred, right_vectors[:, 0, :])
    # A singular vector's sign is arbitrary: take the one that agrees with Grad-CAM's summed
    # evidence, so the map's bright end is the explained class's, as in every other method.
    evidence = ops.sum(centred, axis=-1)
    agreement = ops.sum(projection * evidence, axis=1, keepdims=True)
    signs = ops.where(agreement < 0, -1.0, 1.0)
    return ops.relu(ops.reshape(projection * signs, (-1, height, width)))


def normalise(maps):
    """Scale each map to [0, 1]; an all-zero map stays zero instead of becoming NaN."""
    peaks = ops.max(maps, axis=(1, 2), keepdims=True)
    return maps / (peaks + EPSILON)


METHODS = {
    "gradcam": lambda maps, grads: weighted_map(maps, gradcam_weights(maps, grads)),
    "gradcam++": lambda maps, grads: weighted_map(maps, gradcam_plus_plus_weights(maps, grads)),
    "eigengradcam": eigengradcam,
}
METHOD_NAMES = tuple(METHODS)


def all_maps(feature_maps, gradients):
    """(B, M, h, w): every method's normalised map, in METHOD_NAMES order, from one gradient."""
    feature_maps = ops.cast(feature_maps, "float32")
    gradients = ops.cast(gradients, "float32")
    return ops.stack(
        [normalise(METHODS[name](feature_maps, gradients)) for name in METHOD_NAMES], 1
    )
