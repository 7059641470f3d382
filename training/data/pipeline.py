"""The tf.data training pipeline of chapter 8 of "TensorFlow in Action", without its bugs.

List files → decode (in the graph) → cache → per epoch: shuffle → crop-or-resize, flip,
colour jitter (train) or resize (val/test) → batch; epochs in sequence → prefetch. Labels are
the dataset's class ids (its labelmap's order, VOC's by default) and 255.

TensorFlow's PNG decoder expands palettes to RGB and knows no labelmap, so masks of every
form (palettized, index, RGB colours) are converted once by
:func:`training.data.index_masks.prepare_index_masks` into single-channel PNGs of class ids
(validated on the way). After that no Python runs per sample: every step is a graph op.

    ds = make_dataset("VOCdevkit/VOC2012", "train", batch_size=8, augment=True,
                      shuffle=True, repeat=True, seed=1)
    images, labels = next(iter(ds))  # float32 [8,384,384,3] in [0,1], uint8 [8,384,384]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from training.data import voc
from training.data.index_masks import index_mask_path, prepare_index_masks
from training.data.layouts import open_layout

AUTOTUNE = tf.data.AUTOTUNE


# --- per-sample graph functions ----------------------------------------------------------------


def normalize_image(image: tf.Tensor) -> tf.Tensor:
    """uint8 RGB → float32 in [0, 1]. The one normalization used by training and export."""
    return tf.cast(image, tf.float32) / 255.0


def load_pair(image_file: tf.Tensor, mask_file: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode a JPEG (or PNG) image and an index mask: uint8 [H,W,3] and uint8 [H,W]."""
    image = tf.io.decode_image(tf.io.read_file(image_file), channels=3, expand_animations=False)
    mask = tf.io.decode_png(tf.io.read_file(mask_file), channels=1)
    tf.debugging.assert_equal(
        tf.shape(image)[:2],
        tf.shape(mask)[:2],
        message=tf.strings.format("image and mask sizes differ: {} vs {}", (image_file, mask_file)),
    )
    return image, mask[..., 0]


def _resize_pair(image, mask, size):
    """Bilinear for the image, nearest for the mask (so ids and 255 survive)."""
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def random_crop_or_resize(image, mask, seeds, input_size, resize_before_crop):
    """The book's augmentation: with p=0.5 resize to ``resize_before_crop`` and crop
    ``input_size`` at one random offset shared by image and mask, else resize to ``input_size``."""
    choice_seed, crop_seed = seeds[0], seeds[1]
    height, width = input_size

    def resize_and_crop():
        big_image, big_mask = _resize_pair(image, mask, resize_before_crop)
        # One offset for both: slicing each is cheaper than stacking them for random_crop.
        limit = tf.constant([resize_before_crop[0] - height + 1, resize_before_crop[1] - width + 1])
        offset = (
            tf.random.stateless_uniform(
                [2], seed=crop_seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
            )
            % limit
        )
        return (
            tf.slice(big_image, [offset[0], offset[1], 0], [height, width, 3]),
            tf.slice(big_mask, offset, [height, width]),
        )

    def resize_only():
        return _resize_pair(image, mask, input_size)

    coin = tf.random.stateless_uniform([], seed=choice_seed)
    return tf.cond(coin < 0.5, resize_and_crop, resize_only)


IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
"""Where random scale pads the image: the mean the backbones' preprocessing subtracts (DeepLab
pads with its mean pixel), so padding reads as about 0 to the network; masks pad with 255."""


def random_scale_crop(image, mask, seeds, input_size, scale_range):
    """DeepLab's augmentation: fit the frame into ``input_size`` (long side = its long side),
    scale it by a factor drawn from ``scale_range``, pad the bottom and right to at least
    ``input_size`` (image: :data:`IMAGENET_MEAN_RGB`, mask: 255, which the losses ignore),
    and crop ``input_size`` at one random offset shared by image and mask."""
    scale_seed, crop_seed = seeds[0], seeds[1]
    height, width = input_size
    frame = tf.cast(tf.shape(mask), tf.float32)
    scale = tf.random.stateless_uniform(
        [], seed=scale_seed, minval=scale_range[0], maxval=scale_range[1]
    )
    fitted = scale * max(input_size) / tf.reduce_max(frame)
    size = tf.maximum(tf.cast(tf.round(frame * fitted), tf.int32), 1)
    image, mask = _resize_pair(image, mask, size)
    padding = [[0, tf.maximum(height - size[0], 0)], [0, tf.maximum(width - size[1], 0)]]
    mean = tf.constant(IMAGENET_MEAN_RGB, image.dtype)
    image = tf.pad(image - mean, [*padding, [0, 0]]) + mean
    mask = tf.pad(mask, padding, constant_values=255)
    limit = tf.shape(mask) - tf.constant([height, width]) + 1
    offset = (
        tf.random.stateless_uniform(
            [2], seed=crop_seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
        )
        % limit
    )
    return (
        tf.slice(image, [offset[0], offset[1], 0], [height, width, 3]),
        tf.slice(mask, offset, [height, width]),
    )


def random_flip(image, mask, seed):
    """Horizontal flip of image and mask together with p=0.5."""
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    return tf.cond(
        flip, lambda: (tf.reverse(image, [1]), tf.reverse(mask, [1])), lambda: (image, mask)
    )


def color_jitter(image, seeds):
    """Hue ±0.1, brightness ±0.1, contrast 0.8–1.2 on the image only, clipped back to [0, 1]."""
    image = tf.image.stateless_random_hue(image, 0.1, seed=seeds[0])
    image = tf.image.stateless_random_brightness(image, 0.1, seed=seeds[1])
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seed=seeds[2])
    return tf.clip_by_value(image, 0.0, 1.0)


def augment_sample(image, mask, seed, *, input_size, resize_before_crop, scale_range=None):
    """Training transform of one decoded uint8 pair, deterministic given ``seed`` (int64 [2]).

    ``scale_range`` None: the book's (crop or resize, flip, colour jitter); (low, high):
    DeepLab's (:func:`random_scale_crop`, flip; no colour jitter)."""
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    image = normalize_image(image)
    if scale_range is not None:
        image, mask = random_scale_crop(image, mask, seeds[0:2], input_size, scale_range)
        image, mask = random_flip(image, mask, seeds[2])
        return _with_shapes(image, mask, input_size)
    image, mask = random_crop_or_resize(image, mask, seeds[0:2], input_size, resize_before_crop)
    image, mask = random_flip(image, mask, seeds[2])
    image = color_jitter(image, seeds[3:6])
    return _with_shapes(image, mask, input_size)


def resize_sample(image, mask, *, input_size):
    """Evaluation transform: resize only (``input_size=None``: keep the image's own size)."""
    if input_size is None:
        return normalize_image(image), mask
    image, mask = _resize_pair(normalize_image(image), mask, input_size)
    return _with_shapes(image, mask, input_size)


def _with_shapes(image, mask, input_size):
    image = tf.ensure_shape(image, [*input_size, 3])
    mask = tf.ensure_shape(mask, list(input_size))
    return image, mask


# --- the dataset -----------------------------------------------------------------------------


def _shuffle_with_tensor_seed(
    dataset: tf.data.Dataset, buffer_size: int, seed: tf.Tensor
) -> tf.data.Dataset:
    """``Dataset.shuffle`` seeded by a tensor only, whatever TF's global seed is.

    Called while tracing an epoch's function. ``shuffle`` combines its seed with the global one
    (``tf.random.set_seed``, which ``keras.utils.set_random_seed`` sets); a global seed of 0
    makes that code compare the symbolic seed in Python and fail. The traced function's graph
    is given no global seed, so the order depends on ``seed`` alone.
    """
    graph = tf.compat.v1.get_default_graph()
    global_seed, graph.seed = graph.seed, None
    try:
        return dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False)
    finally:
        graph.seed = global_seed


def _epoch_seeds(seed: int, epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(shuffle seed, augmentation key) for one epoch: int64 scalars derived from (seed, epoch)."""
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    drawn = tf.random.stateless_uniform(
        [2], seed=pair, minval=0, maxval=tf.int64.max, dtype=tf.int64
    )
    return drawn[0], drawn[1]


def make_dataset(
    voc_root: str | Path,
    split: str,
    *,
    batch_size: int,
    input_size: tuple[int, int] | None = (384, 384),
    augment: bool = False,
    resize_before_crop: tuple[int, int] = (444, 444),
    scale_range: tuple[float, float] | None = None,
    shuffle: bool = False,
    repeat: bool | int = False,
    seed: int | None = None,
    split_seed: int = voc.DEFAULT_SPLIT_SEED,
    val_fraction: float = voc.DEFAULT_VAL_FRACTION,
    test_fraction: float = voc.DEFAULT_TEST_FRACTION,
    ids: Sequence[str] | None = None,
    index_dir: str | Path | None = None,
    cache: bool | str = True,
    drop_remainder: bool = False,
    num_classes: int | None = None,
    progress: bool = False,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(images float32 [B,H,W,3] in [0,1], labels uint8 [B,H,W])`` for a split.

    ``split`` is resolved by the root's layout (:func:`training.data.layouts.open_layout`:
    :func:`training.data.voc.resolve_split`, SBD's ``train_aug``, Cityscapes' folders) with
    ``split_seed`` and,
    for a root with one list, ``val_fraction`` and ``test_fraction`` (``ids`` overrides it).
    Labels are checked for ``num_classes`` (default: the root's labelmap's).
    ``seed`` makes shuffling and augmentation reproducible; every epoch (repetition) draws a
    new order and new augmentations, a function of ``(seed, epoch)`` only: ``first_epoch=k``
    starts the stream at epoch k, as a resumed training run needs. Without ``repeat`` the
    dataset is one epoch, the same one each time it is iterated. ``input_size=None`` keeps each
    image at its own size (evaluation only, batch 1). ``scale_range`` (low, high) augments
    with DeepLab's random scale instead of the book's crop-or-resize (:func:`augment_sample`).
    ``cache`` keeps decoded uint8
    pairs in memory (True) or in a file (a path).
    """
    if input_size is None:  # each image at its own size, as full-resolution evaluation wants
        if augment or batch_size != 1:
            raise ValueError("input_size=None (native sizes) needs augment=False, batch_size=1")
    else:
        input_size = tuple(input_size)
    resize_before_crop = tuple(resize_before_crop)
    if augment and (resize_before_crop[0] < input_size[0] or resize_before_crop[1] < input_size[1]):
        raise ValueError(
            f"resize_before_crop {resize_before_crop} must be at least input_size {input_size}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    layout = open_layout(voc_root)  # VOC / CVAT (+ SBD's train_aug), or Cityscapes
    if ids is None:
        ids = layout.resolve_split(
            split,
            seed=split_seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )
    ids = list(ids)
    if not ids:
        raise ValueError(f"split {split!r} of {voc_root} is empty")
    index_dir = prepare_index_masks(
        layout, ids, index_dir, num_classes=num_classes, progress=progress
    )
    image_files = [str(layout.image_path(i)) for i in ids]
    mask_files = [str(index_mask_path(index_dir, i)) for i in ids]

    pairs = tf.data.Dataset.from_tensor_slices((image_files, mask_files))
    pairs = pairs.map(load_pair, num_parallel_calls=AUTOTUNE)
    if cache:
        pairs = pairs.cache("" if cache is True else str(cache))
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        shuffle_seed, augment_key = _epoch_seeds(seed, epoch)
        dataset = pairs
        if shuffle:
            dataset = _shuffle_with_tensor_seed(dataset, len(ids), shuffle_seed)
        if augment:
            dataset = dataset.enumerate().map(
                lambda position, pair: augment_sample(
                    *pair,
                    tf.stack([augment_key, position]),
                    input_size=input_size,
                    resize_before_crop=resize_before_crop,
                    scale_range=scale_range,
                ),
                num_parallel_calls=AUTOTUNE,
            )
        else:
            dataset = dataset.map(
                lambda image, mask: resize_sample(image, mask, input_size=input_size),
                num_parallel_calls=AUTOTUNE,
            )
        return dataset.batch(batch_size, drop_remainder=drop_remainder)

    # Epoch e's order and augmentations depend only on (seed, e), so a resumed run that starts
    # at ``first_epoch`` sees exactly the batches the uninterrupted run saw. The decoded cache
    # above is shared by every epoch.
    epoch_count = 1 if not repeat else (None if repeat is True else int(repeat))
    last_epoch = tf.int64.max if epoch_count is None else first_epoch + epoch_count
    dataset = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
    if epoch_count is not None:  # flat_map hides the length; Keras wants it for progress
        per_epoch = len(ids) // batch_size if drop_remainder else -(-len(ids) // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(per_epoch * epoch_count))
    return dataset.prefetch(AUTOTUNE)
