"""DeepLab v3's evaluation: multi-scale + flip equals a NumPy average of the per-scale,
per-flip softmax; a run trained at output stride 16 evaluates at 8 with the same weights."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.cli import main
from training.config import TrainConfig
from training.data.synth import write_synthetic_voc
from training.learning.evaluate import load_at_output_stride
from training.learning.run_folder import RunFolder
from training.model.multiscale import multiscale_probabilities


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    """Not mirror-symmetric (random 3×3 kernels), output at its input's size."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(5, 3, padding="same"),
        ]
    )


@pytest.mark.parametrize("size", [None, (16, 20)])
def test_multiscale_flip_equals_a_numpy_average_of_softmaxes(small_model, size):
    images = tf.random.stateless_uniform([2, 24, 30, 3], seed=[1, 1])
    scales = (0.5, 1.0, 1.5)
    base = np.array(images.shape[1:3] if size is None else size, float)
    expected = []
    for scale in scales:
        scaled = tf.image.resize(images, np.maximum(np.round(base * scale), 1).astype(int))
        for flip in (False, True):
            batch = scaled.numpy()[:, :, ::-1] if flip else scaled.numpy()
            logits = [small_model(image[None]).numpy() for image in batch]  # one at a time
            logits = tf.image.resize(np.concatenate(logits), images.shape[1:3]).numpy()
            expected.append(_softmax(logits[:, :, ::-1] if flip else logits))
    ms = multiscale_probabilities(
        small_model,
        images,
        scales=scales,
        flip=True,
        size=None if size is None else tf.constant(size),
    )
    assert ms.shape == (2, 24, 30, 5)
    np.testing.assert_allclose(ms.numpy(), np.mean(expected, axis=0), atol=2e-6)
    unflipped = multiscale_probabilities(
        small_model, images, scales=scales, size=size and tf.constant(size)
    )
    np.testing.assert_allclose(unflipped.numpy(), np.mean(expected[::2], axis=0), atol=2e-6)
    assert not np.allclose(unflipped.numpy(), ms.numpy(), atol=1e-3)  # the flip matters


def test_no_scales_or_non_positive_ones_are_refused(small_model):
    with pytest.raises(ValueError, match=r"scales must be positive factors, got \(1.0, 0.0\)"):
        multiscale_probabilities(small_model, tf.zeros([1, 8, 8, 3]), scales=(1.0, 0.0))


@pytest.fixture(scope="module")
def os16_run(tmp_path_factory) -> RunFolder:
    """A run folder trained at output stride 16 (random weights stand in for trained ones)."""
    tmp = tmp_path_factory.mktemp("os16")
    root = write_synthetic_voc(tmp / "voc", count=5, seed=2, size=(64, 48), val_fraction=0.4)
    config = TrainConfig(
        data=str(root),
        out=str(tmp / "run"),
        backbone="mobilenetv2",
        backbone_weights=None,
        input_size=(48, 48),
        batch_size=2,
        output_stride=16,
    )
    run = RunFolder(config.out)
    run.write_config(config)
    keras.utils.set_random_seed(1)
    model = run.build_model()
    # Moving statistics away from 0/1, so that loading them is checked too.
    rng = np.random.default_rng(0)
    for weight in model.non_trainable_weights:
        low, high = (0.5, 1.5) if weight.name == "moving_variance" else (-0.1, 0.1)
        weight.assign(rng.uniform(low, high, weight.shape).astype("float32"))
    model.save_weights(run.best_weights)
    return run


def test_output_stride_8_reuses_the_output_stride_16_weights(os16_run):
    os16 = os16_run.load_model()
    os8 = load_at_output_stride(os16_run, 8)
    assert len(os8.weights) == len(os16.weights)
    for a, b in zip(os16.weights, os8.weights, strict=True):
        # Only the ASPP branches' names carry their rate (aspp_rate6 → aspp_rate12).
        renamed = re.sub(r"aspp_rate(\d+)", lambda m: f"aspp_rate{2 * int(m[1])}", a.path)
        assert (renamed, a.shape) == (b.path, b.shape)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rates = {
        layer.name: layer.dilation_rate
        for layer in os8.layers
        if "aspp_rate" in layer.name and "conv" in layer.name
    }
    assert rates == {f"aspp_rate{r}_conv": (r, r) for r in (12, 24, 36)}
    # Batch statistics: untrained weights in inference mode give nearly constant logits.
    images = tf.random.stateless_uniform([2, 48, 48, 3], seed=[3, 3])
    # Same weights, other rates: another function of the image.
    assert np.abs(os16(images, training=True) - os8(images, training=True)).max() > 0.1


def test_evaluate_at_output_stride_8_with_scales_and_flip_writes_its_own_folder(os16_run, capsys):
    args = ["evaluate", "--run", str(os16_run.path), "--split", "val", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-3])
    assert main([*args, "--output-stride", "8", "--scales", "0.75,1.0,1.25", "--flip"]) == 0
    printed = capsys.readouterr().out
    assert "output stride 8, scales 0.75/1/1.25, flipped" in printed
    written = json.loads((os16_run.evaluation / "val-os8-ms3-flip" / "metrics.json").read_text())
    assert (written["output_stride"], written["scales"], written["flip"]) == (
        8,
        [0.75, 1.0, 1.25],
        True,
    )
    assert 0 < written["ms_per_image"] < 10_000 and written["images"] == plain["images"] > 0
    assert (os16_run.evaluation / "val" / "metrics.json").is_file()
    assert written["loss"] != plain["loss"]
