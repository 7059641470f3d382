"""DeepLab v3 (Chen et al. 2017, "Rethinking Atrous Convolution") as in chapter 8 of the book,
and DeepLab v3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution").

v3: dilated backbone → ASPP (1×1, three 3×3 atrous branches, image pooling) → concatenation →
1×1 projection → 1×1 classifier → bilinear resize to the input. Every resize reads sizes at
run time, so one model serves any input size (the book hard-codes 24 and 384).

v3+ (``decoder=True``) puts a light decoder between the ASPP and the classifier: the
backbone's stride-4 features (:data:`~training.model.backbones.LOW_LEVEL_LAYERS`) projected
to 48 channels, concatenated with the ASPP output resized to their size, two 3×3 convolutions
of 256, then the classifier and the ×4 resize. The 3×3 convolutions are depthwise-separable
(depthwise 3×3, BN, ReLU, pointwise 1×1, BN, ReLU), as in the paper's Xception model and the
default of DeepLab's own code (``decoder_use_separable_conv``): at 480×640 two plain 3×3
convolutions of 304→256 and 256→256 channels over the 120×160 map would cost 24.8 B
multiply-adds, four times MobileNetV2-DeepLab v3's whole network; the separable pair costs
2.9 B (``benchmarks/decoder_cost.py``, docs/performance.md).

    model = build_deeplabv3(21, backbone="resnet50", backbone_weights=None)
    model(np.zeros((1, 384, 512, 3), "float32")).shape  # logits at the input's size
    # → TensorShape([1, 384, 512, 21])
    plus = build_deeplabv3(21, backbone="mobilenetv2", backbone_weights=None, decoder=True)
"""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import tensorflow as tf

from training.model.backbones import dilated_backbone

ASPP_RATES_AT_OS16 = (6, 12, 18)
ASPP_FILTERS = 256
LOW_LEVEL_FILTERS = 48  # v3+: the paper's Table 1 (48 channels scored best)
DECODER_FILTERS = 256


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
    sync_batch_norm: bool = False,
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
    x = keras.layers.BatchNormalization(
        momentum=bn_momentum, synchronized=sync_batch_norm, name=f"{name}_bn"
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def separable_conv_bn_relu(
    inputs: keras.KerasTensor,
    filters: int,
    *,
    bn_momentum: float = 0.99,
    sync_batch_norm: bool = False,
    name: str,
) -> keras.KerasTensor:
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU (DeepLab's
    ``split_separable_conv2d``). Separate layers, not Keras' SeparableConv2D, so each batch
    norm follows a plain convolution and folds into it at export."""
    depthwise = keras.layers.DepthwiseConv2D(
        3, padding="same", use_bias=False, name=f"{name}_depthwise"
    )
    x = depthwise(inputs)
    x = keras.layers.BatchNormalization(
        momentum=bn_momentum, synchronized=sync_batch_norm, name=f"{name}_depthwise_bn"
    )(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return conv_bn_relu(
        x,
        filters,
        1,
        bn_momentum=bn_momentum,
        sync_batch_norm=sync_batch_norm,
        name=f"{name}_pointwise",
    )


def aspp(
    features: keras.KerasTensor,
    rates: tuple[int, ...],
    filters: int = ASPP_FILTERS,
    *,
    bn_momentum: float = 0.99,
    sync_batch_norm: bool = False,
) -> keras.KerasTensor:
    """Atrous spatial pyramid pooling with image-level features and the 1×1 projection."""
    unit = functools.partial(
        conv_bn_relu, filters=filters, bn_momentum=bn_momentum, sync_batch_norm=sync_batch_norm
    )
    branches = [unit(features, kernel_size=1, name="aspp_1x1")]
    branches += [unit(features, kernel_size=3, rate=r, name=f"aspp_rate{r}") for r in rates]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(features)
    pooled = unit(pooled, kernel_size=1, name="aspp_pool_1x1")
    branches.append(ResizeToMatch(name="aspp_pool_resize")([pooled, features]))
    merged = keras.layers.Concatenate(name="aspp_concat")(branches)
    return unit(merged, kernel_size=1, name="aspp_projection")


def v3plus_decoder(
    features: keras.KerasTensor,
    low_level: keras.KerasTensor,
    *,
    bn_momentum: float = 0.99,
    sync_batch_norm: bool = False,
) -> keras.KerasTensor:
    """DeepLab v3+'s decoder: ``features`` (the ASPP output) resized to ``low_level``'s size at
    run time, concatenated with its 48-channel projection, then two separable 3×3 units."""
    norm = dict(bn_momentum=bn_momentum, sync_batch_norm=sync_batch_norm)
    projected = conv_bn_relu(low_level, LOW_LEVEL_FILTERS, 1, name="decoder_low_level", **norm)
    upsampled = ResizeToMatch(name="decoder_upsample")([features, projected])
    x = keras.layers.Concatenate(name="decoder_concat")([upsampled, projected])
    x = separable_conv_bn_relu(x, DECODER_FILTERS, name="decoder_conv1", **norm)
    return separable_conv_bn_relu(x, DECODER_FILTERS, name="decoder_conv2", **norm)


def build_deeplabv3(
    num_classes: int = 21,
    *,
    backbone: str = "resnet50",
    output_stride: int = 16,
    backbone_weights: str | Path | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    bn_momentum: float | None = None,
    decoder: bool = False,
    sync_batch_norm: bool = False,
) -> keras.Model:
    """DeepLab v3 (v3+ with ``decoder``): images float32 ``[B,H,W,3]`` in [0, 1] → logits
    float32 ``[B,H,W,C]``.

    ``backbone``: ``"resnet50"`` (the book's) or ``"mobilenetv2"`` (for onboard computers).
    ``output_stride`` 16 or 8 (ASPP rates 6/12/18 at 16, doubled at 8).
    ``backbone_weights``: ``"imagenet"``, ``None`` or a keras.applications weights file.
    ``bn_momentum``: every batch norm's moving-average momentum (None: Keras' defaults).
    ``sync_batch_norm``: every batch norm (backbone and head) takes its training statistics
    over the global batch of all replicas (Keras' ``synchronized=True``; the same as False
    outside a distribution strategy and at inference).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    features_model = dilated_backbone(
        backbone,
        output_stride=output_stride,
        weights=backbone_weights,
        input_shape=input_shape,
        bn_momentum=bn_momentum,
        sync_batch_norm=sync_batch_norm,
        low_level=decoder,
    )
    images = features_model.inputs[0]
    features, *low_level = features_model.outputs
    norm = dict(
        bn_momentum=0.99 if bn_momentum is None else bn_momentum, sync_batch_norm=sync_batch_norm
    )
    rates = tuple(rate * 16 // output_stride for rate in ASPP_RATES_AT_OS16)
    x = aspp(features, rates, **norm)
    if decoder:
        x = v3plus_decoder(x, low_level[0], **norm)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    # float32 logits even under mixed precision: softmax and the losses need the range.
    logits = ResizeToMatch(name="logits", dtype="float32")([x, images])
    version = "deeplabv3plus" if decoder else "deeplabv3"
    return keras.Model(images, logits, name=f"{version}_{backbone}_os{output_stride}")
