"""DeepLab v3 (Chen et al. 2017, "Rethinking Atrous Convolution") as in chapter 8 of the book.

Dilated backbone → ASPP (1×1, three 3×3 atrous branches, image pooling) → concatenation →
1×1 projection → 1×1 classifier → bilinear resize to the input. Both resizes read sizes at run
time, so one model serves any input size (the book hard-codes 24 and 384).

    model = build_deeplabv3(21, backbone="resnet50", backbone_weights=None)
    model(np.zeros((1, 384, 512, 3), "float32")).shape  # logits at the input's size
    # → TensorShape([1, 384, 512, 21])
"""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import tensorflow as tf

from training.model.backbones import dilated_backbone

ASPP_RATES_AT_OS16 = (6, 12, 18)
ASPP_FILTERS = 256


@keras.saving.register_keras_serializable(package="rcseg")
class ResizeToMatch(keras.layers.Layer):
    """Bilinear resize of ``inputs[0]`` to the height and width of ``inputs[1]`` at run time."""

    def call(self, inputs):
        tensor, reference = inputs
        resized = tf.image.resize(tensor, tf.shape(reference)[1:3], method="bilinear")
        return tf.cast(resized, self.compute_dtype)

    def compute_output_shape(self, input_shapes):
        tensor_shape, reference_shape = input_shapes
        return (tensor_shape[0], reference_shape[1], reference_shape[2], tensor_shape[3])


def conv_bn_relu(
    inputs: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    *,
    rate: int = 1,
    bn_momentum: float = 0.99,
    name: str,
) -> keras.KerasTensor:
    """Convolution without bias (BN has one) → batch norm → ReLU, the unit of DeepLab's head."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=rate,
        use_bias=False,
        name=f"{name}_conv",
    )(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def aspp(
    features: keras.KerasTensor,
    rates: tuple[int, ...],
    filters: int = ASPP_FILTERS,
    *,
    bn_momentum: float = 0.99,
) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling with image-level features and the 1×1 projection."""
    unit = functools.partial(conv_bn_relu, filters=filters, bn_momentum=bn_momentum)
    branches = [unit(features, kernel_size=1, name="aspp_1x1")]
    branches += [unit(features, kernel_size=3, rate=r, name=f"aspp_rate{r}") for r in rates]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(features)
    pooled = unit(pooled, kernel_size=1, name="aspp_pool_1x1")
    branches.append(ResizeToMatch(name="aspp_pool_resize")([pooled, features]))
    merged = keras.layers.Concatenate(name="aspp_concat")(branches)
    return unit(merged, kernel_size=1, name="aspp_projection")


def build_deeplabv3(
    num_classes: int = 21,
    *,
    backbone: str = "resnet50",
    output_stride: int = 16,
    backbone_weights: str | Path | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    bn_momentum: float | None = None,
) -> keras.Model:
    """DeepLab v3: images float32 ``[B,H,W,3]`` in [0, 1] → logits float32 ``[B,H,W,C]``.

    ``backbone``: ``"resnet50"`` (the book's) or ``"mobilenetv2"`` (for onboard computers).
    ``output_stride`` 16 or 8 (ASPP rates 6/12/18 at 16, doubled at 8).
    ``backbone_weights``: ``"imagenet"``, ``None`` or a keras.applications weights file.
    ``bn_momentum``: every batch norm's moving-average momentum (None: Keras' defaults).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    features_model = dilated_backbone(
        backbone,
        output_stride=output_stride,
        weights=backbone_weights,
        input_shape=input_shape,
        bn_momentum=bn_momentum,
    )
    images = features_model.inputs[0]
    rates = tuple(rate * 16 // output_stride for rate in ASPP_RATES_AT_OS16)
    x = aspp(features_model.output, rates, bn_momentum=0.99 if bn_momentum is None else bn_momentum)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    # float32 logits even under mixed precision: softmax and the losses need the range.
    logits = ResizeToMatch(name="logits", dtype="float32")([x, images])
    return keras.Model(images, logits, name=f"deeplabv3_{backbone}_os{output_stride}")
