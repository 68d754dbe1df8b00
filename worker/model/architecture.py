"""The CNN, built from scratch as a `features` trunk and a `head` that ends in one logit.

Splitting the network lets Grad-CAM differentiate the head with respect to the trunk's output
without running the trunk twice, and lets prediction and explanation share one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

LAST_CONV_LAYER = "last_conv"
# Keras' default 0.99 leaves the moving statistics far from the data after a few hundred
# steps (short phantom runs), and inference-mode predictions then collapse to one class.
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Architecture:
    image_size: int = 128
    block_filters: tuple[int, ...] = (16, 32, 64, 128)
    dense_units: int = 64
    dropout: float = 0.3


def conv_block(tensor, filters: int, index: int, pool: bool, last: bool = False):
    """Two 3x3 convolutions with BatchNorm; the very last conv is named for Grad-CAM."""
    tensor = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}a")(tensor)
    tensor = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"bn{index}a")(tensor)
    tensor = layers.Activation("relu", name=f"relu{index}a")(tensor)
    tensor = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}b")(tensor)
    tensor = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"bn{index}b")(tensor)
    # Grad-CAM reads the rectified activations of the final block: this layer's output.
    tensor = layers.Activation("relu", name=LAST_CONV_LAYER if last else f"relu{index}b")(tensor)
    if pool:
        tensor = layers.MaxPooling2D(2, name=f"pool{index}")(tensor)
    return tensor


def build_features(arch: Architecture) -> keras.Model:
    """uint8 image -> last conv feature map. Rescaling lives here so serving cannot skip it."""
    image = keras.Input((arch.image_size, arch.image_size, 1), name="image")
    tensor = layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    last_index = len(arch.block_filters) - 1
    for index, filters in enumerate(arch.block_filters):
        is_last = index == last_index
        tensor = conv_block(tensor, filters, index, pool=not is_last, last=is_last)
    return keras.Model(image, tensor, name="features")


def build_head(arch: Architecture, feature_shape: tuple[int, ...]) -> keras.Model:
    feature_map = keras.Input(feature_shape, name="feature_map")
    tensor = layers.GlobalAveragePooling2D(name="gap")(feature_map)
    tensor = layers.Dropout(arch.dropout, name="dropout")(tensor)
    tensor = layers.Dense(arch.dense_units, activation="relu", name="dense")(tensor)
    logit = layers.Dense(1, name="logit")(tensor)
    return keras.Model(feature_map, logit, name="head")


def build_classifier(arch: Architecture) -> keras.Model:
    """features -> head, one logit out; the saved `.keras` file holds this model."""
    features = build_features(arch)
    head = build_head(arch, tuple(features.output.shape[1:]))
    image = keras.Input((arch.image_size, arch.image_size, 1), name="image")
    return keras.Model(image, head(features(image)), name="pneumonia_cnn")


def split_classifier(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The two sub-models of a classifier made by `build_classifier` (also after loading)."""
    return model.get_layer("features"), model.get_layer("head")
