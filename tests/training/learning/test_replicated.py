"""ReplicatedModel is the plain model for everything but distributed ``fit``: the same layers
and weights files, and a test step that skips an empty batch. (Training under two workers:
test_multi_worker.py.)"""

from __future__ import annotations

import keras
import numpy as np

from training.learning.metrics import PixelAccuracy
from training.learning.replicated import ReplicatedModel
from training.model.deeplab import build_deeplabv3


def _randomize(model: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(size=variable.shape))


def _assert_same_weights(model: keras.Model, other: keras.Model) -> None:
    for ours, theirs in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_its_weights_files_and_the_plain_models_load_into_each_other(tmp_path):
    replicated = ReplicatedModel.of(
        build_deeplabv3(3, backbone="mobilenetv2", backbone_weights=None)
    )
    plain = build_deeplabv3(3, backbone="mobilenetv2", backbone_weights=None)
    _randomize(replicated, seed=0)
    replicated.save_weights(tmp_path / "replicated.weights.h5")
    plain.load_weights(tmp_path / "replicated.weights.h5")
    _assert_same_weights(replicated, plain)
    _randomize(plain, seed=1)
    plain.save_weights(tmp_path / "plain.weights.h5")
    replicated.load_weights(tmp_path / "plain.weights.h5")
    _assert_same_weights(replicated, plain)


def test_an_empty_batch_leaves_the_metrics_as_they_were():
    images = keras.Input((8, 8, 3))
    model = ReplicatedModel.of(keras.Model(images, keras.layers.Conv2D(3, 3)(images)))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[PixelAccuracy(3)])  # fmt: skip
    x, y = np.ones((2, 8, 8, 3), np.float32), np.ones((2, 6, 6), np.uint8)
    before = model.evaluate(x, y, return_dict=True, verbose=0)
    after_empty = model.test_step((x[:0], y[:0]))
    assert {name: float(value) for name, value in after_empty.items()} == before
