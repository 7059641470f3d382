"""Inference-time rewrites of a trained model that compute the same function faster.

TensorFlow lowers a dilated (atrous) convolution to SpaceToBatchND → Conv2D → BatchToSpaceND:
the feature map is cut into rate² interleaved pieces, padded to a multiple of the rate, and
reassembled. At DeepLab's small feature maps (24×24 at 384×384, OS16) the rate-18 ASPP branch
is padded to 2.25× its work, and the reshuffles cost memory bandwidth. Conv2D's own
``dilations`` attribute runs the atrous kernel directly (oneDNN on x86 CPUs, cuDNN on GPUs),
with the same standard op TF Serving loads.

    >>> fast = with_native_dilation(model)   # same weights, same outputs (within float error)

Only Conv2D layers with dilation > 1 and stride 1 change (ResNet-50's conv5 and the ASPP
branches; MobileNetV2's dilated depthwise blocks keep the lowering, see ``_NATIVE``); the rest
of the model is copied as is.

Padding-only taps: with "same" padding, a 3×3 kernel at rate r on a feature map n ≤ r pixels
high reads only zero padding through its top and bottom rows (every row ± r is outside the
map). A 480×640 frame gives ResNet-50 an 18×24 map at OS16, so the rate-18 ASPP branch is a
1×3 convolution there: ``trim_padding_taps`` drops those kernel rows (or columns) at run time,
the same sums without two thirds of that branch's work. Frame sizes vary, so the choice is
made in the graph (a slice of the kernel, standard ops).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from training.batch_norm_folding import fold_batch_norms


def _dilated(layer: keras.layers.Layer) -> bool:
    return max(layer.dilation_rate) > 1 and max(layer.strides) == 1


@keras.saving.register_keras_serializable(package="rcseg")
class NativeDilatedConv2D(keras.layers.Conv2D):
    """Conv2D whose dilation runs as the op's ``dilations`` attribute (no space-to-batch);
    with ``trim_padding_taps`` it skips kernel rows/columns that can only read padding."""

    def __init__(self, *args, trim_padding_taps: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.trim_padding_taps = trim_padding_taps

    def get_config(self) -> dict:
        return {**super().get_config(), "trim_padding_taps": self.trim_padding_taps}

    def convolution_op(self, inputs, kernel):
        if self.trim_padding_taps and self.padding == "same":
            kernel = _without_padding_taps(kernel, tf.shape(inputs)[1:3], self.dilation_rate)
        return tf.nn.conv2d(
            inputs,
            kernel,
            strides=1,
            padding=self.padding.upper(),
            dilations=[1, *self.dilation_rate, 1],
        )


def _without_padding_taps(
    kernel: tf.Tensor, feature_size: tf.Tensor, dilation_rate: tuple[int, int]
) -> tf.Tensor:
    """``kernel`` [kh,kw,in,out] cut to its centre row (column) where the feature map's
    height (width) is at most the rate: every other row then reads padding only ("same"
    padding, stride 1, odd kernel sizes; even sizes pad unevenly and are left whole)."""
    starts, sizes = [], []
    for axis, rate in enumerate(dilation_rate):
        taps = kernel.shape[axis]
        if taps % 2 == 0 or taps == 1:
            starts.append(0)
            sizes.append(taps)
            continue
        padding_only = feature_size[axis] <= rate
        starts.append(tf.where(padding_only, taps // 2, 0))
        sizes.append(tf.where(padding_only, 1, taps))
    return tf.slice(kernel, tf.stack([*starts, 0, 0]), tf.stack([*sizes, -1, -1]))


# Depthwise convolutions (MobileNetV2's dilated blocks) keep the lowering: TensorFlow's
# DepthwiseConv2dNative rejects dilations in float16 on CPUs and, depending on the build, on
# GPUs; Conv2D's dilations run everywhere (oneDNN, Eigen, cuDNN), in every precision.
_NATIVE = {keras.layers.Conv2D: NativeDilatedConv2D}


@dataclass(frozen=True)
class InferenceOptimizations:
    """Which rewrites export applies (each has a ``--no-…`` flag; all on by default)."""

    native_dilation: bool = True
    trim_padding_taps: bool = True  # part of native dilation: ignored without it
    fold_batch_norms: bool = True

    def to_json(self) -> dict[str, bool]:
        return {
            "native_dilation": self.native_dilation,
            "trim_padding_taps": self.native_dilation and self.trim_padding_taps,
            "fold_batch_norms": self.fold_batch_norms,
        }


DEFAULT_OPTIMIZATIONS = InferenceOptimizations()
NO_OPTIMIZATIONS = InferenceOptimizations(native_dilation=False, fold_batch_norms=False)


def optimize_for_inference(
    model: keras.Model, optimizations: InferenceOptimizations = DEFAULT_OPTIMIZATIONS
) -> keras.Model:
    """``model`` rewritten as ``optimizations`` say (the model itself when none is on)."""
    if optimizations.native_dilation:
        model = with_native_dilation(model, trim_padding_taps=optimizations.trim_padding_taps)
    if optimizations.fold_batch_norms:
        model = fold_batch_norms(model)
    return model


def with_native_dilation(model: keras.Model, *, trim_padding_taps: bool = True) -> keras.Model:
    """A copy of ``model`` whose stride-1 dilated convolutions use the native kernels; the
    weights are copied, so it answers what ``model`` answers."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        native = _NATIVE.get(type(layer))
        config = layer.get_config()
        if native is not None and _dilated(layer):
            return native.from_config({**config, "trim_padding_taps": trim_padding_taps})
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def native_dilation_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model`` (nested models included) that run natively dilated."""
    return [layer for layer in _walk(model) if isinstance(layer, tuple(_NATIVE.values()))]


def _walk(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer
