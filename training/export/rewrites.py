"""Inference-time rewrites of a trained model that compute the same function faster.

TensorFlow lowers a dilated (atrous) convolution to SpaceToBatchND → Conv2D → BatchToSpaceND:
the feature map is cut into rate² interleaved pieces, padded to a multiple of the rate, and
reassembled. At DeepLab's small feature maps (24×24 at 384×384, OS16) the rate-18 ASPP branch
is padded to 2.25× its work, and the reshuffles cost memory bandwidth. Conv2D's own
``dilations`` attribute runs the atrous kernel directly (oneDNN on x86 CPUs, cuDNN on GPUs),
with the same standard op TF Serving loads.

    fast = with_native_dilation(model)   # same weights, same outputs (within float error)

Only Conv2D layers with dilation > 1 and stride 1 change (ResNet-50's conv5 and the ASPP
branches; MobileNetV2's dilated depthwise blocks keep the lowering, see ``_NATIVE``); the rest
of the model is copied as is.

Export applies every rewrite that paid off in ``benchmarks/inference_speed.py``
(docs/performance.md) through :func:`optimize_for_inference`: native dilation, then batch
norms folded into the convolutions (:mod:`training.export.batch_norm_folding`).

    served = optimize_for_inference(model)                        # what export serves
    served = optimize_for_inference(model, InferenceOptimizations(fold_batch_norms=False))

The ONNX export needs a third form, :func:`with_explicit_padding`: ONNX Runtime refuses a
dilated Conv with ``auto_pad=SAME_UPPER`` (what tf2onnx makes of ``padding="SAME"``), so each
stride-1 dilated convolution, depthwise ones included, pads explicitly and convolves VALID.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from training.config import InferenceOptimizations
from training.export.batch_norm_folding import fold_batch_norms, walk_layers


def _dilated(layer: keras.layers.Layer) -> bool:
    return max(layer.dilation_rate) > 1 and max(layer.strides) == 1


@keras.saving.register_keras_serializable(package="rcseg")
class NativeDilatedConv2D(keras.layers.Conv2D):
    """Conv2D whose dilation runs as the op's ``dilations`` attribute (no space-to-batch)."""

    def convolution_op(self, inputs, kernel):
        return tf.nn.conv2d(
            inputs,
            kernel,
            strides=1,
            padding=self.padding.upper(),
            dilations=[1, *self.dilation_rate, 1],
        )


def _same_padding(layer: keras.layers.Layer) -> list[list[int]]:
    """tf.pad amounts (NHWC) that make a stride-1 VALID convolution answer as ``layer``'s
    own padding does (none for ``"valid"``)."""
    pads = [[0, 0]]
    for size, rate in zip(layer.kernel_size, layer.dilation_rate, strict=True):
        total = rate * (size - 1) if layer.padding == "same" else 0
        pads.append([total // 2, total - total // 2])
    return [*pads, [0, 0]]


@keras.saving.register_keras_serializable(package="rcseg")
class PaddedDilatedConv2D(keras.layers.Conv2D):
    """Conv2D that pads explicitly and convolves VALID with the same dilation and weights."""

    def convolution_op(self, inputs, kernel):
        return tf.nn.conv2d(
            tf.pad(inputs, _same_padding(self)),
            kernel,
            strides=1,
            padding="VALID",
            dilations=[1, *self.dilation_rate, 1],
        )


@keras.saving.register_keras_serializable(package="rcseg")
class PaddedDilatedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D that pads explicitly and convolves VALID with the same dilation."""

    def call(self, inputs):
        # The raw op keeps the dilation an attribute (tf.nn.depthwise_conv2d would lower it to
        # space-to-batch again).
        outputs = tf.raw_ops.DepthwiseConv2dNative(
            input=tf.pad(inputs, _same_padding(self)),
            filter=self.kernel,
            strides=[1, 1, 1, 1],
            padding="VALID",
            dilations=[1, *self.dilation_rate, 1],
        )
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


_EXPLICIT = {
    keras.layers.Conv2D: PaddedDilatedConv2D,
    keras.layers.DepthwiseConv2D: PaddedDilatedDepthwiseConv2D,
}


# Depthwise convolutions (MobileNetV2's dilated blocks) keep the lowering: TensorFlow's
# DepthwiseConv2dNative rejects dilations in float16 on CPUs and, depending on the build, on
# GPUs; Conv2D's dilations run everywhere (oneDNN, Eigen, cuDNN), in every precision.
_NATIVE = {keras.layers.Conv2D: NativeDilatedConv2D}


DEFAULT_OPTIMIZATIONS = InferenceOptimizations()
NO_OPTIMIZATIONS = InferenceOptimizations(native_dilation=False, fold_batch_norms=False)


def optimize_for_inference(
    model: keras.Model, optimizations: InferenceOptimizations = DEFAULT_OPTIMIZATIONS
) -> keras.Model:
    """``model`` rewritten as ``optimizations`` say (the model itself when none is on)."""
    if optimizations.native_dilation:
        model = with_native_dilation(model)
    if optimizations.fold_batch_norms:
        model = fold_batch_norms(model)
    return model


def with_native_dilation(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose stride-1 dilated convolutions use the native kernels; the
    weights are copied, so it answers what ``model`` answers."""
    return _with_dilated_as(model, _NATIVE)


def with_explicit_padding(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose stride-1 dilated convolutions (depthwise too) pad explicitly
    and convolve VALID: the form ONNX Runtime runs. Same weights, same outputs."""
    return _with_dilated_as(model, _EXPLICIT)


def _with_dilated_as(model: keras.Model, classes: dict[type, type]) -> keras.Model:
    """A copy of ``model`` with each stride-1 dilated layer of a type in ``classes`` rebuilt as
    the class it maps to (from the same config; the weights copied)."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        replacement = classes.get(type(layer))
        config = layer.get_config()
        if replacement is not None and _dilated(layer):
            return replacement.from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def native_dilation_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model`` (nested models included) that run natively dilated."""
    native = tuple(_NATIVE.values())
    return [layer for _, layer in walk_layers(model) if isinstance(layer, native)]
