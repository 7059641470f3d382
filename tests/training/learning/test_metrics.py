"""Streaming confusion-matrix metrics against NumPy and keras.metrics.MeanIoU."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.data import voc
from training.learning.losses import CrossEntropyDiceLoss
from training.learning.metrics import (
    ConfusionMatrixMetric,
    MeanAccuracy,
    MeanIoU,
    PerClassIoU,
    PixelAccuracy,
    scores_from_confusion,
    update_confusion,
)

C = 21
SCALARS = {"pixel_accuracy": PixelAccuracy, "mean_accuracy": MeanAccuracy, "mean_iou": MeanIoU}


def np_confusion(labels, predicted, num_classes=C):
    valid = labels != 255
    cells = labels[valid].astype(np.int64) * num_classes + predicted[valid]
    return np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes)


def np_scores(cm):
    """Straight from the definitions, class by class."""
    cm = cm.astype(np.float64)
    acc, iou = [], []
    for c in range(len(cm)):
        tp, fn, fp = cm[c, c], cm[c].sum() - cm[c, c], cm[:, c].sum() - cm[c, c]
        acc.append(tp / (tp + fn) if tp + fn else np.nan)
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    return {
        "pixel_accuracy": np.trace(cm) / cm.sum(),
        "mean_accuracy": np.nanmean(acc),
        "mean_iou": np.nanmean(iou),
        "per_class_accuracy": np.array(acc),
        "per_class_iou": np.array(iou),
    }


def one_hot_logits(predicted, num_classes=C):
    return (5.0 * np.eye(num_classes, dtype=np.float32)[predicted]).astype(np.float32)


def noisy(labels, rate, seed):
    """A prediction: the labels with ``rate`` of pixels (and every 255) set to random classes."""
    rng = np.random.default_rng(seed)
    predicted = labels.astype(np.int64).copy()
    flip = (rng.random(labels.shape) < rate) | (labels == 255)
    predicted[flip] = rng.integers(0, C, int(flip.sum()))
    return predicted


def check_streaming(labels, predicted, batch_sizes, logits=None):
    """Feed batches of ``batch_sizes``; compare with one shot, NumPy and keras' MeanIoU."""
    logits = one_hot_logits(predicted) if logits is None else logits
    metrics = [cls() for cls in SCALARS.values()] + [PerClassIoU()]
    reference = keras.metrics.MeanIoU(num_classes=C, ignore_class=255, sparse_y_pred=True)
    start = 0
    for size in batch_sizes:
        part = slice(start, start + size)
        for metric in metrics:
            metric.update_state(labels[part], logits[part])
        reference.update_state(labels[part], predicted[part])
        start += size
    assert start == len(labels)

    expected_cm = np_confusion(labels, predicted)
    expected = np_scores(expected_cm)
    for metric in metrics:
        np.testing.assert_array_equal(metric.confusion().numpy(), expected_cm)
    np.testing.assert_array_equal(update_confusion(labels, logits).numpy(), expected_cm)
    np.testing.assert_array_equal(reference.total_cm.numpy(), expected_cm)
    for metric in metrics[:3]:
        result = metric.result()
        assert result.dtype == tf.float32 and result.shape == ()
        np.testing.assert_allclose(float(result), expected[metric.name], rtol=1e-6)
    np.testing.assert_allclose(metrics[3].result().numpy(), expected["per_class_iou"], rtol=1e-6)
    np.testing.assert_allclose(float(metrics[2].result()), float(reference.result()), rtol=1e-5)
    scores = scores_from_confusion(expected_cm)  # NumPy input
    for key, value in expected.items():
        np.testing.assert_allclose(scores[key].numpy(), value, rtol=1e-12)
    return expected


def test_random_masks_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, (10, 16, 16)).astype(np.uint8)  # classes 12..20 absent
    labels[rng.random(labels.shape) < 0.15] = 255
    logits = rng.normal(size=(*labels.shape, C)).astype(np.float32)
    predicted = logits.argmax(-1)
    expected = check_streaming(labels, predicted, [3, 1, 6], logits=logits)
    assert np.isnan(expected["per_class_accuracy"][12:]).all()  # absent classes do not count
    # float16 logits (mixed precision) and [B,H,W,1] float labels give the same matrix
    half = logits.astype(np.float16)
    np.testing.assert_array_equal(
        update_confusion(labels[..., None].astype(np.float32), half),
        np_confusion(labels, half.astype(np.float32).argmax(-1)),
    )


def test_real_voc_masks_with_noisy_predictions(voc_sample):
    paths = sorted((voc_sample / "SegmentationClass").glob("*.png"))
    masks = [voc.read_mask(p) for p in paths]
    height = min(m.shape[0] for m in masks)
    width = min(m.shape[1] for m in masks)
    labels = np.stack([m[:height:2, :width:2] for m in masks])  # a common size, 1/4 the pixels
    assert len(labels) == 9 and (labels == 255).any()
    predicted = noisy(labels, 0.1, seed=1)
    expected = check_streaming(labels, predicted, [4, 2, 3])
    assert 0.85 < expected["pixel_accuracy"] < 0.95
    assert 0 < expected["mean_iou"] < expected["mean_accuracy"] < 1


def test_absent_classes_are_not_scored_one():
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[:, :, 2:] = 3  # only classes 0 and 3; half of class 0 predicted as 3
    predicted = labels.astype(np.int64).copy()
    predicted[:, :2, :2] = 3
    labels[0, 0, 0] = 255
    logits = one_hot_logits(predicted)
    accuracy, iou = MeanAccuracy(), MeanIoU()
    accuracy.update_state(labels[:1], logits[:1])
    accuracy.update_state(labels[1:], logits[1:])
    iou.update_state(labels, logits)
    # class 0: 8 of 15 right, 7 predicted as 3; class 3: 16 of 16 right. No other class is
    # predicted, so 19 classes count in neither mean (the book scored each 1.0).
    np.testing.assert_allclose(float(accuracy.result()), (8 / 15 + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(iou.result()), (8 / 15 + 16 / 23) / 2, rtol=1e-6)


def test_empty_and_reset_state_give_zero_not_nan():
    for cls in SCALARS.values():
        metric = cls()
        assert float(metric.result()) == 0.0
        metric.update_state(np.full((1, 3, 3), 255, np.uint8), np.zeros((1, 3, 3, C)))
        assert float(metric.result()) == 0.0
        metric.update_state(np.ones((1, 3, 3), np.uint8), one_hot_logits(np.ones((1, 3, 3), int)))
        assert float(metric.result()) == 1.0
        metric.reset_state()
        assert float(metric.result()) == 0.0 and not metric.confusion().numpy().any()
    assert np.isnan(PerClassIoU().result().numpy()).all()


def test_out_of_range_labels_and_sample_weight():
    labels = np.array([[[0, 1], [30, 255]], [[1, 1], [0, 0]]], np.int32)
    logits = one_hot_logits(np.array([[[0, 0], [1, 1]], [[1, 0], [0, 0]]]))
    cm = update_confusion(labels, logits).numpy()
    assert cm.sum() == 6 and cm[0, 0] == 3 and cm[1, 0] == 2 and cm[1, 1] == 1  # 30 excluded
    per_image = update_confusion(labels, logits, sample_weight=np.array([1.0, 0.0])).numpy()
    np.testing.assert_array_equal(per_image, update_confusion(labels[:1], logits[:1]))
    pixel = np.ones((2, 2, 2, 1))
    pixel[1, 0, 0] = 3.0
    weighted = update_confusion(labels, logits, sample_weight=pixel).numpy()
    assert weighted[1, 1] == 3 and weighted.sum() == 8
    metric = PixelAccuracy()
    metric.update_state(labels, logits, sample_weight=np.array([1.0, 0.0]))
    assert float(metric.result()) == 0.5


def test_scores_from_confusion_known_matrix():
    scores = scores_from_confusion(np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]], np.int64))
    assert float(scores["pixel_accuracy"]) == 0.75
    assert float(scores["mean_accuracy"]) == 0.75  # classes 1 and 2 are not in the labels
    assert float(scores["mean_iou"]) == 0.375  # class 1 was predicted: IoU 0 counts
    np.testing.assert_array_equal(scores["per_class_iou"].numpy(), [0.75, 0.0, np.nan])
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(np.zeros((2, 3)))


@pytest.mark.parametrize("cls", [*SCALARS.values(), PerClassIoU])
def test_config_round_trip(cls):
    metric = cls(num_classes=5, ignore_label=254)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is cls and restored.get_config() == metric.get_config()
    assert restored.num_classes == 5 and restored.ignore_label == 254
    assert cls().name == cls.score  # constructible with defaults, named after its score
    assert issubclass(cls, ConfusionMatrixMetric)


@pytest.mark.parametrize("jit_compile", [False, True])  # "auto" means XLA on a GPU machine
def test_fit_and_evaluate_match_numpy_on_the_same_predictions(jit_compile):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 6, (12, 8, 8)).astype(np.uint8)
    y[rng.random(y.shape) < 0.1] = 255
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(C, 3, padding="same")(inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=CrossEntropyDiceLoss(),
        metrics=[PixelAccuracy(), MeanAccuracy(), MeanIoU(), PerClassIoU()],
        jit_compile=jit_compile,
    )
    assert model.jit_compile is jit_compile
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert 0 < history.history["pixel_accuracy"][0] <= 1

    got = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)  # batches 5, 5, 2
    logits = model.predict(x, batch_size=12, verbose=0)
    expected = np_scores(np_confusion(y, logits.argmax(-1)))
    for name in SCALARS:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)
    np.testing.assert_allclose(got["per_class_iou"], expected["per_class_iou"], rtol=1e-6)
    per_image = CrossEntropyDiceLoss().call(y, logits).numpy()
    np.testing.assert_allclose(got["loss"], per_image.mean(), rtol=1e-5)
