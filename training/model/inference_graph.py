"""Frames in, class maps out: the graph every export variant (and ``predict``) runs.

uint8 RGB frames ``[N,H,W,3]`` → the training normalization → resize to the network size →
model → logits resized back to H×W → argmax (``class_map``) and max softmax × 255
(``confidence``), both uint8 ``[N,H,W]``. Sizes are read at run time, so one graph serves
frames of any size. An ``output_size`` (int32 ``[M,2]``, every row the same ``[h, w]``) asks
for the maps at another size, e.g. a planner's 120×160 grid: the logits are resized straight to
it, which costs less than resizing them to the frame and shrinking the class map afterwards;
``[0, 0]`` (the signatures' default) means the frame's size.

Network size: ``"aspect"`` (default) scales the frame so its long side equals the long side of
the training input size and rounds both sides to a multiple of the output stride (the feature
grid then covers the frame exactly); ``"stretch"`` resizes to the training input size like the
book, distorting frames of another aspect ratio.

    network_size(tf.constant([480, 640]), input_size=(384, 384), output_stride=16)
    # → <tf.Tensor: shape=(2,), dtype=int32, numpy=array([288, 384], dtype=int32)>
    outputs = segment_frames(model, frames, input_size=(384, 384), output_stride=16)
    outputs["class_map"].shape  # == frames.shape[:3]
    outputs = segment_frames(model, frames, input_size=(384, 384), output_stride=16,
                             output_size=tf.constant([[120, 160]]))  # [N,120,160]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from client.contract import CLASS_MAP, CONFIDENCE, INPUT_DEFAULTS, OUTPUT_SIZE
from training.config import PLAIN_SCALES, RESIZE_MODES
from training.data.pipeline import normalize_image
from training.model.multiscale import multiscale_probabilities

DEFAULT_OUTPUT_SIZE = INPUT_DEFAULTS[OUTPUT_SIZE]
"""``output_size`` when a request leaves it out: the frame's own size."""


def network_size(
    frame_size: tf.Tensor,
    *,
    input_size: tuple[int, int],
    output_stride: int,
    resize: str = "aspect",
) -> tf.Tensor:
    """int32 ``[2]`` (height, width) the network sees for a frame of ``frame_size`` (H, W)."""
    if resize == "stretch":
        return tf.constant(input_size, tf.int32)
    if resize != "aspect":
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    frame_size = tf.cast(frame_size, tf.float32)
    scale = max(input_size) / tf.reduce_max(frame_size)
    steps = tf.round(frame_size * scale / output_stride)
    return tf.cast(tf.maximum(steps, 1.0), tf.int32) * output_stride


def requested_size(output_size: tf.Tensor, frame_size: tf.Tensor) -> tf.Tensor:
    """int32 ``[2]``: the size the maps are wanted at, from an ``output_size`` input
    (int32 ``[M,2]``, rows alike; ``[0, 0]``: the frame's ``frame_size``).

    A request carries one output size (its maps are one dense tensor); one row per frame is
    allowed because TF Serving's batching needs every input to have the frames' dimension 0.
    Larger than the frame is refused: the answer would only cost memory and bytes."""
    rows = tf.shape(output_size)[0]
    checks = [
        tf.debugging.assert_positive(
            rows, message=f"{OUTPUT_SIZE} needs a row [height, width] ([0, 0]: the frame size)"
        ),
        tf.debugging.assert_equal(
            output_size,
            tf.broadcast_to(output_size[:1], tf.shape(output_size)),
            message=f"every row of {OUTPUT_SIZE} must ask for the same size (one request, "
            "one size of map)",
        ),
    ]
    with tf.control_dependencies(checks):
        wanted = tf.identity(output_size[0])
    frame_size = tf.cast(frame_size, tf.int32)
    is_default = tf.reduce_all(tf.equal(wanted, 0))
    in_range = tf.reduce_all(wanted >= 1) & tf.reduce_all(wanted <= frame_size)
    # (No apostrophes: TensorFlow escapes them in an Assert's message.)
    valid = tf.debugging.Assert(
        is_default | in_range,
        [
            f"{OUTPUT_SIZE} must be [0, 0] (the frame size) or between [1, 1] and the frame "
            "size; got",
            wanted,
            "for a frame of (height, width)",
            frame_size,
        ],
    )
    with tf.control_dependencies([valid]):
        return tf.where(is_default, frame_size, wanted)


def logits_at_frame_size(
    model: Callable[[tf.Tensor], tf.Tensor],
    images: tf.Tensor,
    size: tf.Tensor | None,
    out_size: tf.Tensor | None = None,
) -> tf.Tensor:
    """float32 logits for images in [0, 1] ``[N,H,W,3]``: the network runs at ``size`` (None:
    the images' own size) and its logits are resized bilinearly to ``out_size`` (None: the
    images' own size, ``[N,H,W,C]``)."""
    logits = tf.cast(
        model(images if size is None else tf.image.resize(images, size, method="bilinear")),
        tf.float32,
    )
    if size is None and out_size is None:
        return logits
    return tf.image.resize(
        logits, tf.shape(images)[1:3] if out_size is None else out_size, method="bilinear"
    )


def segment_frames(
    model: Callable[[tf.Tensor], tf.Tensor],
    frames: tf.Tensor,
    *,
    input_size: tuple[int, int],
    output_stride: int,
    resize: str = "aspect",
    output_size: tf.Tensor | None = None,
    scales: Sequence[float] = PLAIN_SCALES,
    flip: bool = False,
) -> dict[str, tf.Tensor]:
    """``class_map`` and ``confidence``, uint8 ``[N,H,W]``, for uint8 RGB ``frames [N,H,W,3]``
    (``[N,h,w]`` for an ``output_size`` ``[[h, w]]``, see :func:`requested_size`).

    ``model`` maps float32 images in [0, 1] to logits ``[N,h,w,C]`` (a Keras model, or any
    callable with that contract). ``scales`` other than one plain pass, or ``flip``, average
    the softmax of several passes (:mod:`training.model.multiscale`: an export option for
    servers that can afford it)."""
    non_empty = tf.debugging.assert_positive(
        tf.shape(frames)[1:3], message="frames must be at least 1×1 pixels"
    )
    with tf.control_dependencies([non_empty]):
        frame_size = tf.shape(frames)[1:3]
    size = network_size(
        frame_size, input_size=input_size, output_stride=output_stride, resize=resize
    )
    out_size = None if output_size is None else requested_size(output_size, frame_size)
    if tuple(scales) != PLAIN_SCALES or flip:
        probabilities = multiscale_probabilities(
            model, normalize_image(frames), scales=scales, flip=flip, size=size, out_size=out_size
        )
        top_probability, top_class = tf.math.top_k(probabilities, k=1)
        return {
            CLASS_MAP: tf.cast(top_class[..., 0], tf.uint8),
            CONFIDENCE: tf.cast(tf.round(top_probability[..., 0] * 255.0), tf.uint8),
        }
    logits = logits_at_frame_size(model, normalize_image(frames), size, out_size)
    # One pass finds the winning class and its logit (top_k breaks ties towards the lower
    # index, like argmax); its softmax probability is 1 / Σ exp(logit - top logit). At a
    # 480×640 frame this takes 22 → 18 ms against argmax plus a full softmax.
    top_logit, top_class = tf.math.top_k(logits, k=1)
    confidence = 1.0 / tf.reduce_sum(tf.exp(logits - top_logit), axis=-1)
    return {
        CLASS_MAP: tf.cast(top_class[..., 0], tf.uint8),
        CONFIDENCE: tf.cast(tf.round(confidence * 255.0), tf.uint8),
    }


def decode_frames(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG (also BMP, GIF's first frame) bytes ``[N]`` → uint8 RGB ``[N,H,W,3]``.

    Frames of one request must share a size (the outputs are one dense tensor); otherwise an
    InvalidArgumentError names the sizes. Undecodable bytes fail with TensorFlow's message."""

    non_empty = tf.debugging.assert_positive(tf.size(encoded), message="no images to decode")
    with tf.control_dependencies([non_empty]):
        count = tf.size(encoded)

    def decode(i, pixels, shapes):
        image = tf.io.decode_image(encoded[i], channels=3, dtype=tf.uint8, expand_animations=False)
        # ``* 1``: a plain tensor, not a shape, for the graph's type inference.
        return i + 1, pixels.write(i, tf.reshape(image, [-1])), shapes.write(i, tf.shape(image) * 1)

    _, pixels, shapes = tf.while_loop(
        lambda i, *_: i < count,
        decode,
        (
            tf.constant(0),
            tf.TensorArray(tf.uint8, size=count, infer_shape=False, element_shape=[None]),
            tf.TensorArray(tf.int32, size=count, element_shape=[3]),
        ),
    )
    flat, shapes = pixels.concat(), shapes.stack()
    first = shapes[:1]
    same_size = tf.debugging.assert_equal(
        shapes,
        tf.broadcast_to(first, tf.shape(shapes)),
        message="all images of one segment_jpeg request must have the same size; "
        "send frames of different sizes in separate requests (sizes [H W 3] follow)",
        summarize=8,
    )
    # In a graph, only a data or control dependency orders the check before the reshape.
    with tf.control_dependencies([same_size]):
        return tf.reshape(flat, tf.concat([[count], first[0]], axis=0))
