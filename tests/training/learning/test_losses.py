"""Losses against hand-written NumPy references; 255 pixels must change nothing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.data import voc
from training.learning.losses import (
    CrossEntropyDiceLoss,
    DiceLoss,
    WeightedSparseCategoricalCrossentropy,
    class_weights_from_counts,
    count_class_pixels,
)

C = 5
FIXED = [0.5, 1.0, 2.0, 0.0, 3.0]
WEIGHTS = [None, FIXED, "per_image"]
LOSSES = [WeightedSparseCategoricalCrossentropy, DiceLoss, CrossEntropyDiceLoss]


def batch(seed=0, shape=(3, 6, 7), num_classes=C):
    """Random labels with ~20% 255 pixels (class 1 absent from image 1) and random logits."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape).astype(np.uint8)
    labels[1][labels[1] == 1] = 2
    labels[rng.random(shape) < 0.2] = 255
    logits = rng.normal(0, 2, (*shape, num_classes)).astype(np.float32)
    return labels, logits


def np_weights(class_weights, valid_labels, num_classes):
    if class_weights is None:
        return np.ones(num_classes)
    if class_weights == "per_image":
        return 1 - np.bincount(valid_labels, minlength=num_classes) / max(valid_labels.size, 1)
    return np.asarray(class_weights, np.float64)


def np_softmax(logits):
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def ce_reference(labels, logits, class_weights, num_classes=C):
    out = []
    for lab, lg in zip(labels, logits, strict=True):
        valid = lab != 255
        y = lab[valid].astype(int)
        if y.size == 0:
            out.append(0.0)
            continue
        ce = -np.log(np_softmax(lg[valid])[np.arange(y.size), y])
        out.append(np.sum(np_weights(class_weights, y, num_classes)[y] * ce) / y.size)
    return np.array(out)


def dice_reference(labels, logits, class_weights, num_classes=C, smooth=1.0):
    out = []
    for lab, lg in zip(labels, logits, strict=True):
        valid = lab != 255
        y = lab[valid].astype(int)
        p = np_softmax(lg[valid])
        onehot = np.eye(num_classes)[y]
        dice = (2 * (p * onehot).sum(0) + smooth) / (p.sum(0) + onehot.sum(0) + smooth)
        w = np_weights(class_weights, y, num_classes) * (onehot.sum(0) > 0)  # present classes
        out.append(np.sum(w * (1 - dice)) / np.sum(w) if np.sum(w) > 0 else 0.0)
    return np.array(out)


@pytest.mark.parametrize("class_weights", WEIGHTS)
def test_cross_entropy_matches_numpy(class_weights):
    labels, logits = batch()
    loss = WeightedSparseCategoricalCrossentropy(num_classes=C, class_weights=class_weights)
    expected = ce_reference(labels, logits, class_weights)
    np.testing.assert_allclose(loss.call(labels, logits).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(labels, logits)), expected.mean(), rtol=1e-5)
    if class_weights == "per_image":
        # The weighting really matters: it differs from the unweighted mean.
        assert not np.allclose(expected, ce_reference(labels, logits, None), rtol=1e-3)


@pytest.mark.parametrize("class_weights", WEIGHTS)
def test_dice_matches_numpy(class_weights):
    labels, logits = batch(1)
    loss = DiceLoss(num_classes=C, class_weights=class_weights, smooth=0.5)
    expected = dice_reference(labels, logits, class_weights, smooth=0.5)
    np.testing.assert_allclose(loss.call(labels, logits).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(labels, logits)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("class_weights", WEIGHTS)
def test_cross_entropy_dice_is_the_sum(class_weights):
    labels, logits = batch(2)
    options = dict(num_classes=C, class_weights=class_weights)
    total = CrossEntropyDiceLoss(**options).call(labels, logits).numpy()
    parts = (
        WeightedSparseCategoricalCrossentropy(**options).call(labels, logits)
        + DiceLoss(**options).call(labels, logits)
    ).numpy()
    np.testing.assert_allclose(total, parts, rtol=1e-6)
    expected = ce_reference(labels, logits, class_weights) + dice_reference(
        labels, logits, class_weights
    )
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def loss_and_grad(loss, labels, logits):
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, logits)
    return value.numpy(), tape.gradient(value, logits).numpy()


@pytest.mark.parametrize("loss_class", LOSSES)
def test_ignored_pixels_change_nothing(loss_class):
    labels, logits = batch(3)
    ignored = labels == 255
    assert ignored.any()
    loss = loss_class(num_classes=C)
    value, grad = loss_and_grad(loss, labels, logits)
    changed = logits.copy()
    changed[ignored] = np.random.default_rng(9).normal(0, 50, changed[ignored].shape)
    value2, grad2 = loss_and_grad(loss, labels, changed)
    assert value == value2
    assert np.all(grad[ignored] == 0) and np.all(grad2[ignored] == 0)
    np.testing.assert_array_equal(grad, grad2)
    assert np.abs(grad[~ignored]).sum() > 0


@pytest.mark.parametrize("loss_class", LOSSES)
def test_all_ignored_image_is_zero_not_nan(loss_class):
    labels, logits = batch(4)
    labels[0] = 255
    per_image = loss_class(num_classes=C).call(labels, logits).numpy()
    assert per_image[0] == 0.0 and np.all(per_image[1:] > 0)
    value, grad = loss_and_grad(loss_class(num_classes=C), labels, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(grad[0] == 0)


@pytest.mark.parametrize("class_weights", WEIGHTS)
def test_uint8_labels_with_255_on_cpu(class_weights):
    """The book's bug: gathering a 21-entry weight table with label 255 fails on CPU."""
    labels, logits = batch(5, num_classes=voc.NUM_CLASSES)
    weights = list(np.linspace(0.5, 2, 21)) if class_weights == FIXED else class_weights
    loss = CrossEntropyDiceLoss(class_weights=weights)  # 21 classes, ignore 255
    with tf.device("/CPU:0"):
        value = loss.call(tf.constant(labels, tf.uint8), tf.constant(logits)).numpy()
        as_4d_float = loss.call(labels[..., None].astype(np.float32), logits).numpy()
    expected = ce_reference(labels, logits, weights, 21) + dice_reference(
        labels, logits, weights, 21
    )
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_array_equal(value, as_4d_float)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_float16_logits_are_computed_in_float32(loss_class):
    labels, logits = batch(6)
    half = logits.astype(np.float16)
    loss = loss_class(num_classes=C)
    direct = loss.call(labels, tf.constant(half))
    assert direct.dtype == tf.float32
    np.testing.assert_allclose(
        direct.numpy(), loss.call(labels, half.astype(np.float32)).numpy(), rtol=1e-6
    )
    value, grad = loss_and_grad(loss, labels, half)
    assert grad.dtype == np.float16 and np.isfinite(value) and np.all(np.isfinite(grad))


def test_dice_is_zero_for_a_perfect_prediction_and_higher_for_a_wrong_one():
    labels, logits = batch(7)
    safe = np.where(labels == 255, 0, labels)
    perfect = 30.0 * np.eye(C, dtype=np.float32)[safe]
    wrong = 30.0 * np.eye(C, dtype=np.float32)[(safe + 1) % C]
    loss = DiceLoss(num_classes=C)
    assert np.all(loss.call(labels, perfect).numpy() < 1e-6)
    assert np.all(loss.call(labels, wrong).numpy() > 0.5)
    assert np.all(loss.call(labels, logits).numpy() < loss.call(labels, wrong).numpy())


@pytest.mark.parametrize("loss_class", LOSSES)
def test_config_round_trip(loss_class):
    assert loss_class().get_config()["num_classes"] == 21  # constructible with defaults
    loss = loss_class(num_classes=C, class_weights=np.array(FIXED), ignore_label=254)
    config = loss.get_config()
    assert config["class_weights"] == FIXED and type(config["class_weights"]) is list
    assert loss_class.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is loss_class and restored.get_config() == config
    labels, logits = batch(8)
    labels[labels == 255] = 254
    np.testing.assert_array_equal(
        restored.call(labels, logits).numpy(), loss.call(labels, logits).numpy()
    )


def test_invalid_class_weights_are_refused():
    with pytest.raises(ValueError, match=r"class_weights.*'per_image'.*got 'median'"):
        DiceLoss(class_weights="median")
    with pytest.raises(ValueError, match=r"class_weights: expected 21 weights.*got shape \(5,\)"):
        WeightedSparseCategoricalCrossentropy(class_weights=FIXED)
    with pytest.raises(ValueError, match=r"class_weights.*non-negative"):
        CrossEntropyDiceLoss(num_classes=C, class_weights=[1, 1, -1, 1, 1])


def tiny_model(num_classes=C):
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(inputs))


def test_compiled_model_saved_as_keras_reloads(tmp_path):
    from training.learning.metrics import MeanIoU

    model = tiny_model()
    model.compile(
        optimizer="adam",
        loss=CrossEntropyDiceLoss(num_classes=C, class_weights=FIXED),
        metrics=[MeanIoU(num_classes=C)],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, C, (4, 8, 8)).astype(np.uint8)
    y[:, 0] = 255
    model.optimizer.build(model.trainable_variables)  # saved state matches on reload
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")  # no custom_objects
    assert type(loaded.loss) is CrossEntropyDiceLoss
    assert loaded.loss.get_config() == model.loss.get_config()
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    assert got.keys() == {"loss", "mean_iou"}
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6)


def test_class_weights_from_counts():
    counts = [6, 3, 1, 0]
    np.testing.assert_allclose(class_weights_from_counts(counts), [0.5, 1.0, 3.0, 0.0])
    inverse = class_weights_from_counts(np.array(counts), method="inverse")
    np.testing.assert_allclose(inverse, [1 / 1.8, 1 / 0.9, 1 / 0.3, 0.0], rtol=1e-6)
    assert inverse.dtype == np.float32
    np.testing.assert_allclose(np.dot(np.array(counts) / 10, inverse), 1.0, rtol=1e-6)
    # an even number of present classes: median of (0.4, 0.3, 0.2, 0.1) is 0.25
    np.testing.assert_allclose(
        class_weights_from_counts([4, 3, 2, 1]), [0.625, 0.25 / 0.3, 1.25, 2.5]
    )
    with pytest.raises(ValueError, match=r"method.*got 'mean'"):
        class_weights_from_counts(counts, method="mean")
    with pytest.raises(ValueError, match="pixel_counts"):
        class_weights_from_counts([0, 0])


def test_count_class_pixels_on_real_masks(voc_sample):
    masks = [voc.read_mask(p) for p in sorted((voc_sample / "SegmentationClass").glob("*.png"))]
    assert len(masks) == 9
    counts = count_class_pixels(masks)
    assert counts.dtype == np.int64 and counts.shape == (21,)
    expected = np.zeros(21, np.int64)
    for mask in masks:
        values, n = np.unique(mask, return_counts=True)
        expected[values[values < 21]] += n[values < 21]
    np.testing.assert_array_equal(counts, expected)
    ignored = sum(int((m == 255).sum()) for m in masks)
    assert ignored > 0 and counts.sum() + ignored == sum(m.size for m in masks)
    names = {voc.class_names[i] for i in np.flatnonzero(counts)}
    assert {"background", "aeroplane", "person"} <= names
    weights = class_weights_from_counts(counts)
    assert np.all((weights > 0) == (counts > 0))

    bad = masks[0].copy()
    bad[3, 4] = 42
    with pytest.raises(ValueError, match=r"mask 1: label 42 is neither"):
        count_class_pixels([masks[1], bad])


def test_dice_responds_to_the_present_classes_among_21():
    """Averaged over all 21 classes, the absent ones would make dice nearly constant."""
    labels = np.zeros((1, 16, 16), np.uint8)
    labels[0, 4:12, 4:12] = 15  # a person on background
    uniform = np.zeros((1, 16, 16, 21), np.float32)
    better = uniform.copy()
    better[..., 0] = np.where(labels[0] == 0, 3.0, 0.0)
    better[..., 15] = np.where(labels[0] == 15, 3.0, 0.0)
    dice = DiceLoss(class_weights=None)
    assert float(dice(labels, uniform)) > 0.85
    assert float(dice(labels, better)) < 0.5 * float(dice(labels, uniform))
