"""Folds inference-mode batch norms into the convolutions before them.

At inference a batch norm is a fixed per-channel affine map, ``y = (x - mean) * s + beta``
with ``s = gamma / sqrt(moving_variance + epsilon)``, so a convolution followed by one is a
convolution with a scaled kernel and a bias. Grappler fuses Conv+BN on some paths, but the BN
math (the rsqrt, the multiply-add per activation) still runs on every call; folding it into the
weights once removes it: ResNet-50's export takes 8–16 % less time for a 480×640 frame on a
2-core AVX-512 CPU (``benchmarks/inference_speed.py``, docs/performance.md).

    folded = fold_batch_norms(model)   # same outputs within float error, fewer ops
    folded_batch_norms(folded)         # how many batch norms were folded (for reports)
    # → 59

A batch norm is folded when it directly follows a Conv2D or DepthwiseConv2D (subclasses such
as :class:`training.export.rewrites.NativeDilatedConv2D` included, and keep their class) whose
output feeds nothing else, normalizes the channel axis (-1 or 3), and the convolution has no
activation. The convolution gets the folded kernel and a bias; the batch norm becomes a
:class:`FoldedBatchNorm` that passes its input through (keeping names and the graph's shape).
Everything else is copied unchanged, nested models included. The arithmetic runs in float64
on the variables' values, whatever the layers' dtype policy (mixed precision keeps float32
variables).
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


@keras.saving.register_keras_serializable(package="rcseg")
class FoldedBatchNorm(keras.layers.Layer):
    """What is left of a batch norm folded into the convolution before it: the identity.

    (``keras.layers.Identity`` would not do: the cloned graph passes ``training`` and ``mask``.)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def foldable_batch_norms(
    model: keras.Model,
) -> list[tuple[keras.layers.Layer, keras.layers.BatchNormalization]]:
    """The (convolution, batch norm) pairs of ``model`` (nested models included) that
    :func:`fold_batch_norms` folds; empty for a model it returned."""
    pairs = []
    for owner, layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            conv = _foldable_convolution(owner, layer)
            if conv is not None:
                pairs.append((conv, layer))
    return pairs


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every foldable batch norm (see :func:`foldable_batch_norms`)
    folded into its convolution; it answers what ``model`` answers with ``training=False``.

    Count the folded ones with :func:`folded_batch_norms` on the result."""
    pairs = foldable_batch_norms(model)
    bn_of_conv = {id(conv): bn for conv, bn in pairs}
    folded_bns = {id(bn) for _, bn in pairs}
    clones: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if id(layer) in folded_bns:
            copy = FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy.name)
        elif id(layer) in bn_of_conv:
            copy = layer.__class__.from_config({**config, "use_bias": True})
        else:
            copy = layer.__class__.from_config(config)
        clones.append((layer, copy))
        return copy

    folded = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for original, copy in clones:
        if id(original) in bn_of_conv:
            kernel, bias = _folded_weights(original, bn_of_conv[id(original)])
            copy.kernel.assign(kernel.astype(copy.kernel.dtype))
            copy.bias.assign(bias.astype(copy.bias.dtype))
        elif id(original) not in folded_bns:
            copy.set_weights(original.get_weights())
    return folded


def folded_batch_norms(model: keras.Model) -> int:
    """How many batch norms :func:`fold_batch_norms` folded in ``model`` (one of its results)."""
    return sum(isinstance(layer, FoldedBatchNorm) for _, layer in walk_layers(model))


def walk_layers(model: keras.Model) -> Iterator[tuple[keras.Model, keras.layers.Layer]]:
    """(the model that holds it, layer) for every layer, nested models' layers included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
        else:
            yield model, layer


def _foldable_convolution(
    owner: keras.Model, bn: keras.layers.BatchNormalization
) -> keras.layers.Layer | None:
    """The convolution ``bn`` can be folded into, or None."""
    if len(bn._inbound_nodes) != 1:  # a shared batch norm
        return None
    node = bn._inbound_nodes[0]
    if len(node.input_tensors) != 1:
        return None
    tensor = node.input_tensors[0]
    conv = tensor._keras_history.operation
    if not isinstance(conv, _CONVOLUTIONS) or len(tensor.shape) != 4:
        return None
    if bn.axis not in (-1, 3) or conv.data_format != "channels_last":
        return None
    if conv.activation is not keras.activations.linear:
        return None
    if getattr(conv, "quantization_mode", None) or getattr(conv, "lora_enabled", False):
        return None
    # The convolution runs once, and its output feeds the batch norm only.
    if len(conv._inbound_nodes) != 1 or [n.operation for n in conv._outbound_nodes] != [bn]:
        return None
    if any(output is tensor for output in owner.outputs):
        return None
    return conv


def _folded_weights(
    conv: keras.layers.Layer, bn: keras.layers.BatchNormalization
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of ``conv`` followed by ``bn`` in inference mode (float64)."""

    def value(variable) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)

    mean, variance = value(bn.moving_mean), value(bn.moving_variance)
    gamma = value(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = value(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel = value(conv.kernel)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # [kh, kw, in, multiplier]: output channel c * multiplier + m.
        kernel = kernel * scale.reshape(kernel.shape[2:])
    else:  # [kh, kw, in / groups, out]
        kernel = kernel * scale
    bias = value(conv.bias) if conv.use_bias else np.zeros_like(mean)
    return kernel, (bias - mean) * scale + beta
