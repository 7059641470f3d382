"""Batch norms folded into their convolutions: the same function, without the BN math."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.export.batch_norm_folding import (
    FoldedBatchNorm,
    fold_batch_norms,
    foldable_batch_norms,
    folded_batch_norms,
)
from training.export.rewrites import NativeDilatedConv2D, with_native_dilation
from training.model.deeplab import build_deeplabv3

SIZE = 64
# Every batch norm of both DeepLab models follows a convolution that feeds only it.
FOLDABLE = {"resnet50": 59, "mobilenetv2": 57}


def _batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layers.append(layer)
    return layers


def _randomize_statistics(model: keras.Model, rng: np.random.Generator, frames=None) -> None:
    """Batch norm statistics and affine parameters far from their defaults (0, 1, 1, 0).

    With ``frames``, the moving statistics first become those of the frames (one training-mode
    pass with momentum 0), so that a deep model's activations keep a realistic scale: random
    DeepLab logits otherwise vanish (~1e-12) through untrained batch norms."""
    norms = _batch_norms(model)
    if frames is not None:
        momenta = [bn.momentum for bn in norms]
        for bn in norms:
            bn.momentum = 0.0
        model(frames, training=True)
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
    for bn in norms:
        channels = bn.moving_mean.shape
        variance = bn.moving_variance.numpy() * rng.uniform(0.5, 2.0, channels)
        bn.moving_variance.assign(variance.astype("float32"))
        noise = rng.normal(0.0, 0.3, channels) * np.sqrt(variance)
        bn.moving_mean.assign((bn.moving_mean.numpy() + noise).astype("float32"))
        if bn.scale:
            bn.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
        if bn.center:
            bn.beta.assign(rng.normal(0.0, 0.3, channels).astype("float32"))


def _assert_same_logits(expected, got, *, atol: float = 1e-3, agreement: float = 0.999) -> float:
    expected, got = np.asarray(expected), np.asarray(got)
    scale = float(np.abs(expected).max())
    # Logits that depend on the pixel, else the argmax comparison could not fail.
    assert scale > 1e-3 and float(expected.std(axis=(1, 2)).mean()) > 1e-3 * scale
    np.testing.assert_allclose(got, expected, atol=atol * scale)
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= agreement
    return float(np.abs(got - expected).max() / scale)


def _graph_ops(function, spec: tf.TensorSpec) -> set[str]:
    graph = tf.function(function).get_concrete_function(spec).graph
    return {op.type for op in graph.get_operations()}


@pytest.fixture(scope="module")
def deeplab():
    """``deeplab(backbone)`` → (model with random statistics, frames, its logits); built once."""
    built = {}

    def get(backbone: str):
        if backbone not in built:
            rng = np.random.default_rng(0)
            model = build_deeplabv3(
                21, backbone=backbone, backbone_weights=None, input_shape=(SIZE, SIZE, 3)
            )
            frames = rng.random((2, SIZE, SIZE, 3)).astype("float32")
            _randomize_statistics(model, rng, frames)
            built[backbone] = model, frames, model(frames, training=False).numpy()
        return built[backbone]

    return get


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenetv2"])
def test_folded_deeplab_answers_the_same_without_batch_norms(deeplab, backbone):
    model, frames, expected = deeplab(backbone)
    assert len(foldable_batch_norms(model)) == FOLDABLE[backbone]
    folded = fold_batch_norms(model)
    assert folded_batch_norms(folded) == FOLDABLE[backbone]
    assert foldable_batch_norms(folded) == [] and _batch_norms(folded) == []
    assert folded_batch_norms(model) == 0 and len(_batch_norms(model)) == FOLDABLE[backbone]
    assert len(folded.layers) == len(model.layers)
    assert all(folded.get_layer(conv.name).use_bias for conv, _ in foldable_batch_norms(model))
    _assert_same_logits(expected, folded(frames, training=False))


def _small_model() -> keras.Model:
    """Two foldable batch norms (no beta; no gamma after a depthwise conv with multiplier 2)
    and five that are not: after a conv whose output also feeds an Add, after an Add, after a
    conv with an activation, on another axis, and after a conv whose output is a model output.
    """
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", use_bias=True, name="conv_bias")(inputs)
    x = layers.BatchNormalization(center=False, epsilon=1e-2, name="bn_no_beta")(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-2, name="bn_no_gamma")(x)
    shared = layers.Conv2D(8, 1, name="shared_conv")(x)
    x = layers.BatchNormalization(name="bn_of_shared")(shared)
    x = layers.Add(name="add")([x, shared])
    x = layers.BatchNormalization(name="bn_after_add")(x)
    x = layers.Conv2D(8, 1, activation="relu", name="relu_conv")(x)
    x = layers.BatchNormalization(name="bn_after_activation")(x)
    x = layers.Conv2D(8, 1, name="conv_axis1")(x)
    x = layers.BatchNormalization(axis=1, name="bn_axis1")(x)
    last = layers.Conv2D(5, 1, name="output_conv")(x)
    x = layers.BatchNormalization(name="bn_of_output_conv")(last)
    return keras.Model(inputs, [x, last], name="small")


def test_folding_arithmetic_and_what_is_left_alone():
    rng = np.random.default_rng(1)
    model = _small_model()
    for conv in model.layers:
        if isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            conv.set_weights([rng.normal(0.0, 0.5, w.shape) for w in conv.get_weights()])
    _randomize_statistics(model, rng)
    # Variances near epsilon: forgetting it, or the square root, could not pass.
    model.get_layer("bn_no_beta").moving_variance.assign(rng.uniform(0.005, 0.05, 4))
    assert [bn.name for _, bn in foldable_batch_norms(model)] == ["bn_no_beta", "bn_no_gamma"]

    folded = fold_batch_norms(model)
    assert folded_batch_norms(folded) == 2
    for name in ("bn_no_beta", "bn_no_gamma"):
        assert isinstance(folded.get_layer(name), FoldedBatchNorm)
    assert folded.get_layer("depthwise").use_bias and folded.get_layer("conv_bias").use_bias
    for layer, copy in zip(model.layers, folded.layers, strict=True):
        if layer.name not in ("bn_no_beta", "bn_no_gamma", "conv_bias", "depthwise"):
            assert type(copy) is type(layer)
            for ours, theirs in zip(copy.get_weights(), layer.get_weights(), strict=True):
                np.testing.assert_array_equal(ours, theirs)
    frames = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for expected, got in zip(model(frames), folded(frames), strict=True):
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(got, expected, atol=1e-5 * scale)


def test_nested_models_are_folded():
    inner = _small_model()
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(3, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ],
        name="stem",
    )
    images = keras.Input((8, 8, 3))
    model = keras.Model(images, inner(sequential(images)), name="outer")
    rng = np.random.default_rng(2)
    _randomize_statistics(model, rng)

    folded = fold_batch_norms(model)
    assert len(foldable_batch_norms(model)) == 3 and folded_batch_norms(folded) == 3
    assert foldable_batch_norms(folded) == []
    frames = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for expected, got in zip(model(frames), folded(frames), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5 * float(np.abs(expected).max()))


def test_mixed_precision_folds_in_float32_variables():
    policy = "mixed_float16"
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=policy)(inputs)
    x = layers.BatchNormalization(dtype=policy)(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, dtype=policy)(x)
    x = layers.BatchNormalization(dtype=policy)(x)
    model = keras.Model(inputs, layers.Activation("linear", dtype="float32")(x))
    rng = np.random.default_rng(3)
    _randomize_statistics(model, rng)

    folded = fold_batch_norms(model)
    assert folded_batch_norms(folded) == 2
    for layer in folded.layers[1:-1]:
        assert layer.dtype_policy.name == policy
        assert all(variable.dtype == "float32" for variable in layer.weights)
    frames = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    expected, got = model(frames).numpy(), folded(frames).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-2 * float(np.abs(expected).max()))


@pytest.mark.parametrize("fold_first", [True, False])
def test_composes_with_native_dilation(deeplab, fold_first):
    model, frames, expected = deeplab("resnet50")
    if fold_first:
        fast = with_native_dilation(fold_batch_norms(model))
    else:
        fast = fold_batch_norms(with_native_dilation(model))
    assert folded_batch_norms(fast) == FOLDABLE["resnet50"]
    # conv5's dilated 3×3 convolutions and the ASPP's: native, and with the folded bias.
    native = [layer for layer in fast.layers if isinstance(layer, NativeDilatedConv2D)]
    assert len(native) == 6 and all(layer.use_bias for layer in native)
    _assert_same_logits(expected, fast(frames, training=False))


def test_folded_model_saves_as_a_standard_saved_model(deeplab, tmp_path):
    model, frames, expected = deeplab("mobilenetv2")
    folded = fold_batch_norms(model)
    spec = tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32)
    module = tf.Module()
    module.model = folded
    module.logits = tf.function(
        lambda images: folded(images, training=False), input_signature=[spec]
    )
    batch_norm_ops = {"Rsqrt", "FusedBatchNormV3"}
    assert _graph_ops(lambda images: model(images, training=False), spec) & batch_norm_ops
    assert not _graph_ops(module.logits, spec) & batch_norm_ops
    tf.saved_model.save(module, str(tmp_path / "folded"))

    loaded = tf.saved_model.load(str(tmp_path / "folded"))
    _assert_same_logits(expected, loaded.logits(tf.constant(frames)))
