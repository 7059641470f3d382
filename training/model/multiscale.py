"""Multi-scale and flipped inference: DeepLab v3's slower, more accurate evaluation.

The network runs on each image scaled by every factor in ``scales`` (and, with ``flip``, on
its mirror image too); each output's logits are resized back to the image (the mirror's
flipped back first), turned into probabilities by a softmax, and the probabilities are
averaged, as DeepLab's ``predict_labels_multi_scale`` does (Chen et al. 2017, section 4.1:
"average the predictions"). Resizing the logits before the softmax keeps the bilinear
interpolation where the network's output is linear, as at one scale.

    probabilities = multiscale_probabilities(model, images, scales=(0.75, 1.0, 1.25), flip=True)
    class_map = tf.argmax(probabilities, axis=-1)  # images [N,H,W,3] in [0,1] → [N,H,W]

An export can call it on ``normalize_image(frames)`` with the network size it picks
(:func:`training.model.inference_graph.network_size`) as ``size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from training.config import PLAIN_SCALES as PLAIN  # one scale: the network's plain output


def multiscale_probabilities(
    model: Callable[[tf.Tensor], tf.Tensor],
    images: tf.Tensor,
    *,
    scales: Sequence[float] = PLAIN,
    flip: bool = False,
    size: tf.Tensor | None = None,
    out_size: tf.Tensor | None = None,
) -> tf.Tensor:
    """float32 softmax ``[N,H,W,C]`` averaged over ``scales`` × (image, mirror image if
    ``flip``), at the size of ``images`` (float32 ``[N,H,W,3]`` in [0, 1]), or at ``out_size``
    (int32 ``[2]``: a planner's ``output_size``, the logits resized straight to it).

    ``model`` maps such images to logits ``[N,h,w,C]`` at its input's size (a Keras model, or
    any callable with that contract). Scale 1.0 runs the network at ``size`` (int32 ``[2]``;
    None: the images' own size), scale ``s`` at ``round(size × s)``. Image and mirror image go
    through the network as one batch of 2N."""
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive factors, got {tuple(scales)}")
    frame_size = tf.shape(images)[1:3]
    base = tf.cast(frame_size if size is None else size, tf.float32)
    answer_size = frame_size if out_size is None else out_size
    count = tf.shape(images)[0]
    total = None
    for scale in scales:
        scaled_size = tf.maximum(tf.cast(tf.round(base * scale), tf.int32), 1)
        batch = tf.image.resize(images, scaled_size, method="bilinear")
        if flip:
            batch = tf.concat([batch, tf.reverse(batch, axis=[2])], axis=0)
        logits = tf.cast(model(batch), tf.float32)
        logits = tf.image.resize(logits, answer_size, method="bilinear")
        probabilities = tf.nn.softmax(logits, axis=-1)
        if flip:
            probabilities = probabilities[:count] + tf.reverse(probabilities[count:], axis=[2])
        total = probabilities if total is None else total + probabilities
    return total / float(len(scales) * (2 if flip else 1))
