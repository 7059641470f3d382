"""Segmentation metrics from one streaming confusion matrix over the whole evaluation.

The book averaged mean accuracy per batch with +1 smoothing, so a class absent from a batch
scored 1.0. Here every metric accumulates the same [C,C] confusion matrix (rows = true class,
columns = predicted; ignored pixels excluded) and scores it once at the end, so streaming
equals one shot and absent classes count in no mean. The formulas live in two pure functions
shared with evaluation scripts.

    model.compile(..., metrics=[PixelAccuracy(), MeanAccuracy(), MeanIoU()])
    confusion = update_confusion(labels, logits)  # one batch, float64 [21, 21]
    scores_from_confusion(confusion)["mean_iou"].numpy()
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.data.voc import IGNORE_LABEL, NUM_CLASSES

__all__ = [
    "ConfusionMatrixMetric",
    "MeanAccuracy",
    "MeanIoU",
    "PerClassIoU",
    "PixelAccuracy",
    "scores_from_confusion",
    "update_confusion",
]


def update_confusion(
    labels,
    logits,
    num_classes: int = NUM_CLASSES,
    ignore_label: int = IGNORE_LABEL,
    sample_weight=None,
) -> tf.Tensor:
    """The confusion counts of one batch, float64 [C,C] (rows true, columns predicted).

    ``labels`` [B,H,W] or [B,H,W,1] of any integer or float dtype; ``logits`` [B,H,W,C] (the
    prediction is their argmax). ``ignore_label`` pixels are excluded, and so are labels
    outside ``[0, num_classes)``: an assert would be compiled out of an XLA train step, so
    bad masks are for ``training.data.check`` to report. ``sample_weight`` (optional) broadcasts
    to [B,H,W] from [B], [B,1,1], [B,H,W] or [B,H,W,1] and weights each pixel's count.

    Counts are float64 (exact up to 2**53 pixels) summed with ``unsorted_segment_sum`` over
    ``true * C + pred``: it has float64 kernels on CPU, GPU and XLA and takes weights.
    """
    labels = tf.convert_to_tensor(labels)
    logits = tf.convert_to_tensor(logits)
    if labels.shape.rank == 4:
        labels = tf.squeeze(labels, axis=-1)
    if logits.shape[-1] is not None and logits.shape[-1] != num_classes:
        raise ValueError(
            f"expected logits with {num_classes} classes in the last axis, got shape {logits.shape}"
        )
    labels = tf.cast(labels, tf.int32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    weights = tf.cast(valid, tf.float64)
    if sample_weight is not None:
        sample_weight = tf.cast(sample_weight, tf.float64)
        if sample_weight.shape.rank == 4:
            sample_weight = tf.squeeze(sample_weight, axis=-1)
        while sample_weight.shape.rank < 3:
            sample_weight = sample_weight[..., None]
        weights *= tf.broadcast_to(sample_weight, tf.shape(labels))
    cells = tf.where(valid, labels * num_classes + predicted, tf.zeros_like(labels))
    counts = tf.math.unsorted_segment_sum(
        tf.reshape(weights, [-1]), tf.reshape(cells, [-1]), num_classes * num_classes
    )
    return tf.reshape(counts, [num_classes, num_classes])


def scores_from_confusion(confusion) -> dict[str, tf.Tensor]:
    """Scores of a confusion matrix (tensor or NumPy array, rows true): float64 tensors.

    - ``pixel_accuracy``: correct / all counted pixels;
    - ``mean_accuracy``: mean recall over classes present in the labels;
    - ``mean_iou``: mean IoU over classes with TP+FP+FN > 0 (as ``keras.metrics.MeanIoU``);
    - ``per_class_accuracy``, ``per_class_iou``: [C], NaN for classes that do not count.

    Scalars are 0.0 when nothing counts, never NaN.

        scores = scores_from_confusion(np.array([[3, 1], [0, 0]]))
        float(scores["mean_iou"]), float(scores["mean_accuracy"])
        # → (0.375, 0.75)
    """
    confusion = tf.cast(tf.convert_to_tensor(confusion), tf.float64)
    if confusion.shape.rank != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"expected a square [C,C] confusion matrix, got shape {confusion.shape}")
    true_positives = tf.linalg.diag_part(confusion)
    true_counts = tf.reduce_sum(confusion, axis=1)
    union = true_counts + tf.reduce_sum(confusion, axis=0) - true_positives
    present = true_counts > 0
    scored = union > 0
    nan = tf.fill(tf.shape(true_positives), tf.constant(np.nan, tf.float64))
    per_class_accuracy = tf.where(present, tf.math.divide_no_nan(true_positives, true_counts), nan)
    per_class_iou = tf.where(scored, tf.math.divide_no_nan(true_positives, union), nan)

    def mean_where(values: tf.Tensor, counted: tf.Tensor) -> tf.Tensor:
        total = tf.reduce_sum(tf.where(counted, values, tf.zeros_like(values)))
        return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(counted, tf.float64)))

    return {
        "pixel_accuracy": tf.math.divide_no_nan(
            tf.reduce_sum(true_positives), tf.reduce_sum(confusion)
        ),
        "mean_accuracy": mean_where(per_class_accuracy, present),
        "mean_iou": mean_where(per_class_iou, scored),
        "per_class_accuracy": per_class_accuracy,
        "per_class_iou": per_class_iou,
    }


class ConfusionMatrixMetric(keras.metrics.Metric):
    """A streaming confusion matrix over (labels, logits); subclasses pick one score.

    ``update_state(y_true, y_pred, sample_weight=None)`` adds a batch (``sample_weight`` as in
    :func:`update_confusion`); ``confusion()`` is the float64 [C,C] matrix so far. Set the
    class attribute ``score`` to a key of :func:`scores_from_confusion` to make a metric.
    """

    score: str | None = None

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_label: int = IGNORE_LABEL,
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(name=name or self.score or "confusion_matrix", dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.total_confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            name="total_confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        self.total_confusion.assign_add(
            update_confusion(y_true, y_pred, self.num_classes, self.ignore_label, sample_weight)
        )

    def reset_state(self) -> None:
        self.total_confusion.assign(tf.zeros_like(self.total_confusion))

    def confusion(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.total_confusion)

    def result(self) -> tf.Tensor:
        if self.score is None:
            raise NotImplementedError(f"{type(self).__name__} sets no `score` to report")
        return tf.cast(scores_from_confusion(self.confusion())[self.score], self.dtype)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
        }


@keras.saving.register_keras_serializable(package="rcseg")
class PixelAccuracy(ConfusionMatrixMetric):
    """Correctly classified valid pixels / valid pixels, over the whole evaluation."""

    score = "pixel_accuracy"


@keras.saving.register_keras_serializable(package="rcseg")
class MeanAccuracy(ConfusionMatrixMetric):
    """Mean per-class recall over the classes present in the labels seen so far."""

    score = "mean_accuracy"


@keras.saving.register_keras_serializable(package="rcseg")
class MeanIoU(ConfusionMatrixMetric):
    """Mean IoU over classes with TP+FP+FN > 0, from logits (``keras.metrics.MeanIoU``'s)."""

    score = "mean_iou"


@keras.saving.register_keras_serializable(package="rcseg")
class PerClassIoU(ConfusionMatrixMetric):
    """IoU of each class, float32 [C]; NaN for classes neither in the labels nor predicted.

    Meant for ``evaluate``: Keras' progress bar shows the mean of the vector, and a
    TensorBoard callback cannot log a vector as a scalar.
    """

    score = "per_class_iou"
