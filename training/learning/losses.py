"""Segmentation losses from logits that never let the 255 "ignore" pixels in.

The book's loss gathered a 21-entry weight table with label 255 (out of range: an error on
CPU, working on GPU only by accident) and still averaged over the ignored pixels. Here
ignored pixels are replaced by class 0 *and* zeroed by a mask before any one-hot, and count
in no mean; their logits get an exact zero gradient. Every loss returns one value per
image, so Keras' default reduction averages over the batch.

    model.compile(loss=CrossEntropyDiceLoss(), ...)  # the book's final loss, fixed
    weights = class_weights_from_counts(count_class_pixels(train_masks))
    loss = WeightedSparseCategoricalCrossentropy(class_weights=weights)

``class_weights`` is ``"per_image"`` (the book's: in each image ``w_c = 1 - n_c / N`` over its
valid pixels), ``None`` (all ones) or ``num_classes`` fixed floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from training.data.voc import IGNORE_LABEL, NUM_CLASSES

__all__ = [
    "CrossEntropyDiceLoss",
    "DiceLoss",
    "WeightedSparseCategoricalCrossentropy",
    "class_weights_from_counts",
    "count_class_pixels",
]

PER_IMAGE = "per_image"

ClassWeights = str | Sequence[float] | np.ndarray | None


def _check_class_weights(class_weights: ClassWeights, num_classes: int) -> str | list[float] | None:
    """The validated form of ``class_weights``: "per_image", None or a list of floats."""
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != PER_IMAGE:
            raise ValueError(
                f"class_weights: expected {PER_IMAGE!r}, None or {num_classes} floats, "
                f"got {class_weights!r}"
            )
        return PER_IMAGE
    weights = np.asarray(class_weights, dtype=np.float64)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights: expected {num_classes} weights (one per class), "
            f"got shape {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"class_weights: expected finite non-negative weights, got {weights.tolist()}"
        )
    return [float(w) for w in weights]


def _masked_one_hot(
    y_true: tf.Tensor, num_classes: int, ignore_label: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """One-hot labels [B,H,W,C] (all zeros at ignored pixels) and the valid mask [B,H,W].

    Labels outside ``[0, num_classes)`` other than ``ignore_label`` are ignored too
    (``training.data.check`` reports them; a training step cannot).
    """
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 4:
        y_true = tf.squeeze(y_true, axis=-1)
    labels = tf.cast(y_true, tf.int32)
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    safe = tf.where(valid, labels, tf.zeros_like(labels))  # never index with 255
    mask = tf.cast(valid, tf.float32)
    return tf.one_hot(safe, num_classes, dtype=tf.float32) * mask[..., None], mask


class _SegmentationLoss(keras.losses.Loss):
    """Shared constructor, config and class weighting of the losses below."""

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        class_weights: ClassWeights = PER_IMAGE,
        ignore_label: int = IGNORE_LABEL,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.class_weights = _check_class_weights(class_weights, self.num_classes)

    def _weights(self, one_hot: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Class weights per image, [B,C]."""
        batch = tf.shape(one_hot)[0]
        if self.class_weights == PER_IMAGE:
            counts = tf.reduce_sum(one_hot, axis=[1, 2])  # n_c
            total = tf.reduce_sum(mask, axis=[1, 2])[:, None]  # N
            return 1.0 - tf.math.divide_no_nan(counts, total)
        if self.class_weights is None:
            return tf.ones([batch, self.num_classes], tf.float32)
        fixed = tf.constant(self.class_weights, tf.float32)
        return tf.tile(fixed[None], [batch, 1])

    def _prepare(self, y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """(float32 logits, masked one-hot, valid mask, class weights [B,C])."""
        logits = tf.cast(y_pred, tf.float32)  # float16 under mixed precision
        if logits.shape[-1] is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"{self.name}: expected logits with {self.num_classes} classes in the last "
                f"axis, got shape {logits.shape}"
            )
        one_hot, mask = _masked_one_hot(y_true, self.num_classes, self.ignore_label)
        return logits, one_hot, mask, self._weights(one_hot, mask)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            class_weights=self.class_weights,
            ignore_label=self.ignore_label,
        )
        return config


def _cross_entropy(logits, one_hot, mask, weights) -> tf.Tensor:
    # Σ m·w_label·ce / Σ m per image; the one-hot row of an ignored pixel is all zeros, so
    # both its value and its gradient are exactly 0.
    ce = -tf.reduce_sum(one_hot * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    pixel_weights = tf.einsum("bhwc,bc->bhw", one_hot, weights)
    return tf.math.divide_no_nan(
        tf.reduce_sum(pixel_weights * ce, axis=[1, 2]), tf.reduce_sum(mask, axis=[1, 2])
    )


def _dice(logits, one_hot, mask, weights, smooth: float) -> tf.Tensor:
    # Averaged over the classes present in the image's labels: over all C classes, the many
    # absent ones (dice ≈ smooth / (Σp + smooth) ≈ 0, gradient ≈ 0) would swamp the few
    # present ones and leave the term nearly constant. False positives are CE's to punish.
    probs = tf.nn.softmax(logits, axis=-1) * mask[..., None]
    intersection = tf.reduce_sum(probs * one_hot, axis=[1, 2])
    label_sizes = tf.reduce_sum(one_hot, axis=[1, 2])
    sizes = tf.reduce_sum(probs, axis=[1, 2]) + label_sizes
    dice = (2.0 * intersection + smooth) / (sizes + smooth)
    weights = weights * tf.cast(label_sizes > 0, weights.dtype)
    return tf.math.divide_no_nan(
        tf.reduce_sum(weights * (1.0 - dice), axis=-1), tf.reduce_sum(weights, axis=-1)
    )


@keras.saving.register_keras_serializable(package="rcseg")
class WeightedSparseCategoricalCrossentropy(_SegmentationLoss):
    """Class-weighted cross-entropy from logits: per image, the mean over valid pixels.

    An image without valid pixels contributes 0 (not NaN).

        loss = WeightedSparseCategoricalCrossentropy(class_weights=None)  # plain CE
        loss(labels_uint8, logits)  # labels [B,H,W] or [B,H,W,1], 255 = ignore
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        class_weights: ClassWeights = PER_IMAGE,
        ignore_label: int = IGNORE_LABEL,
        name: str = "weighted_sparse_categorical_crossentropy",
        **kwargs,
    ):
        super().__init__(num_classes, class_weights, ignore_label, name=name, **kwargs)

    def call(self, y_true, y_pred) -> tf.Tensor:
        return _cross_entropy(*self._prepare(y_true, y_pred))


@keras.saving.register_keras_serializable(package="rcseg")
class DiceLoss(_SegmentationLoss):
    """Multi-class soft dice on softmax probabilities, over valid pixels, per image.

    ``dice_c = (2·Σ m·p_c·y_c + smooth) / (Σ m·(p_c + y_c) + smooth)`` and the loss is
    ``Σ_c w_c·(1 - dice_c) / Σ_c w_c`` over the classes c present in the image's labels: 0
    for a perfect prediction, and 0 when no class carries weight (no valid pixels, or a
    one-class image under the book's per-image weights, which give that class 1 − 1 = 0).

        DiceLoss(class_weights=None, smooth=1.0)(labels, logits)  # shape [] after reduction
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        class_weights: ClassWeights = PER_IMAGE,
        ignore_label: int = IGNORE_LABEL,
        smooth: float = 1.0,
        name: str = "dice_loss",
        **kwargs,
    ):
        super().__init__(num_classes, class_weights, ignore_label, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred) -> tf.Tensor:
        return _dice(*self._prepare(y_true, y_pred), self.smooth)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="rcseg")
class CrossEntropyDiceLoss(DiceLoss):
    """Weighted cross-entropy + dice (the book's final loss), same weights for both terms.

    model.compile(optimizer="adam", loss=CrossEntropyDiceLoss())
    """

    def __init__(self, *args, name: str = "cross_entropy_dice_loss", **kwargs):
        """Arguments as :class:`DiceLoss`."""
        super().__init__(*args, name=name, **kwargs)

    def call(self, y_true, y_pred) -> tf.Tensor:
        prepared = self._prepare(y_true, y_pred)
        return _cross_entropy(*prepared) + _dice(*prepared, self.smooth)


def count_class_pixels(
    masks: Iterable[np.ndarray], num_classes: int = NUM_CLASSES, ignore_label: int = IGNORE_LABEL
) -> np.ndarray:
    """Pixels of each class over ``masks`` (int64 [num_classes]); ignored pixels not counted.

        counts = count_class_pixels(read_mask(p) for p in mask_paths)

    Raises ValueError naming the mask and the value if a label is neither a class nor
    ``ignore_label``.
    """
    counts = np.zeros(num_classes, np.int64)
    for index, mask in enumerate(masks):
        flat = np.asarray(mask).ravel()
        if not np.issubdtype(flat.dtype, np.integer):
            raise ValueError(f"mask {index}: expected integer class ids, got dtype {flat.dtype}")
        labels = flat[flat != ignore_label].astype(np.int64)
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(
                f"mask {index}: label {int(bad[0])} is neither a class id (< {num_classes}) "
                f"nor the ignore label {ignore_label} ({bad.size} such pixels)"
            )
        counts += np.bincount(labels, minlength=num_classes)
    return counts


def class_weights_from_counts(
    pixel_counts: Sequence[int] | np.ndarray, *, method: str = "median_frequency"
) -> np.ndarray:
    """Fixed class weights (float32 [C]) from the training split's per-class pixel counts.

    ``"median_frequency"``: ``w_c = median(f) / f_c`` with f the class frequencies, the median
    over classes that have pixels. ``"inverse"``: ``w_c ∝ 1 / f_c``, scaled so the
    pixel-weighted mean weight ``Σ f_c·w_c`` is 1. Classes without pixels get 0.

        class_weights_from_counts([6, 3, 1, 0]).tolist()
        # → [0.5, 1.0, 3.0, 0.0]
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"pixel_counts: expected a 1-D array of counts, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(
            f"pixel_counts: expected non-negative counts with a positive total, "
            f"got {counts.tolist()}"
        )
    freq = counts / counts.sum()
    present = freq > 0
    weights = np.zeros_like(freq)
    if method == "median_frequency":
        weights[present] = np.median(freq[present]) / freq[present]
    elif method == "inverse":
        weights[present] = 1.0 / (present.sum() * freq[present])
    else:
        raise ValueError(f"method: expected 'median_frequency' or 'inverse', got {method!r}")
    return weights.astype(np.float32)
