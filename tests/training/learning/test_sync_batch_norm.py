"""``--sync-batch-norm`` under MirroredStrategy on two logical CPUs: one training step of a
ReplicatedModel gives every batch norm the statistics of the global batch, as one device
computing the whole batch does; without it they differ (the test can fail)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.learning.processes import ENV, REPO

pytestmark = pytest.mark.slow

# Momentum 0: after one step each moving mean / variance *is* that step's batch statistic.
# Learning rate 0: the weights stay, so every model computes from the same ones. The model is
# DeepLab's head units (a 3×3 unit, a separable unit), small enough to trace in seconds; the
# flag's way into every batch norm of the full model is tests/training/model/test_decoder.py's.
SCRIPT = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from training.learning.replicated import ReplicatedModel
from training.model.deeplab import conv_bn_relu, separable_conv_bn_relu

rng = np.random.default_rng(0)
images = rng.normal(size=(4, 16, 24, 3)).astype("float32")
images[2:] = 0.5 * images[2:] + 1.0  # the replicas' halves differ in their statistics
labels = rng.integers(0, 3, (4, 16, 24)).astype("uint8")
batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # 2 per replica

def build(sync):
    x = images_in = keras.Input((None, None, 3))
    x = conv_bn_relu(x, 8, 3, bn_momentum=0.0, sync_batch_norm=sync, name="unit")
    x = separable_conv_bn_relu(x, 8, bn_momentum=0.0, sync_batch_norm=sync, name="separable")
    return keras.Model(images_in, keras.layers.Conv2D(3, 1, name="classifier")(x))

def step(model):
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches, epochs=1, verbose=0)
    return {v.path: np.asarray(v.value) for v in model.non_trainable_variables}

keras.utils.set_random_seed(0)
single = build(False)
initial = single.get_weights()
expected = step(single)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
differences = {}
for sync in (True, False):
    with strategy.scope():
        model = ReplicatedModel.of(build(sync))
        model.set_weights(initial)
    got = step(model)
    assert got.keys() == expected.keys(), "other variables"
    differences[str(sync)] = max(
        float(np.max(np.abs(got[k] - expected[k])) / np.max(np.abs(expected[k])))
        for k in expected
    )
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "statistics": len(expected),
                  "relative_difference": differences}))
"""


def test_synchronized_batch_statistics_equal_one_device_on_the_global_batch():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["statistics"] == 6  # moving mean and variance of three batch norms
    difference = result["relative_difference"]
    assert difference["True"] < 1e-5, difference
    # Each replica's own statistics (averaged afterwards by ReplicatedModel) are not those of
    # the global batch: the variance misses the spread between the halves.
    assert difference["False"] > 1e-2, difference
