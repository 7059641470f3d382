"""Images/s of our training pipeline vs a book-style one (PIL inside tf.numpy_function).

Both read the same files and apply the same augmentation graph; they differ in how samples
are loaded: ours decodes in the graph (JPEG + one-time index PNGs) and caches decoded pairs,
the book's reads image and palettized mask with PIL through tf.numpy_function every epoch.
Epochs alternate between the two so machine noise hits both alike.

    python benchmarks/pipeline_throughput.py                 # synthetic 500x375 VOC-like data
    python benchmarks/pipeline_throughput.py --root VOCdevkit/VOC2012 --split train
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from training.data import voc
from training.data.pipeline import AUTOTUNE, augment_sample, make_dataset
from training.data.synth import write_synthetic_voc


def book_style_dataset(root, ids, *, batch_size, input_size, resize_before_crop, seed):
    """The book's loading: PIL in tf.numpy_function for both files, every epoch, no cache.

    Its augmentation graph is ours (the book's steps: one crop offset shared by image and
    mask, as its crop_to_bounding_box pair does), so the ratio isolates how samples are loaded.
    """

    def load(image_file, mask_file):
        image = np.asarray(Image.open(image_file.decode()).convert("RGB"))
        mask = np.asarray(Image.open(mask_file.decode()))
        return image, mask

    def load_tf(image_file, mask_file):
        image, mask = tf.numpy_function(load, [image_file, mask_file], [tf.uint8, tf.uint8])
        return tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(mask, [None, None])

    files = (
        [str(voc.image_path(root, i)) for i in ids],
        [str(voc.mask_path(root, i)) for i in ids],
    )
    dataset = tf.data.Dataset.from_tensor_slices(files).map(load_tf, num_parallel_calls=AUTOTUNE)
    dataset = dataset.shuffle(len(ids), seed=seed)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        lambda pair, s: augment_sample(
            *pair, s, input_size=input_size, resize_before_crop=resize_before_crop
        ),
        num_parallel_calls=AUTOTUNE,
    )
    return dataset.batch(batch_size).prefetch(AUTOTUNE)


def epoch_rate(iterator_factory, count: int) -> float:
    start = time.perf_counter()
    seen = 0
    for images, _ in iterator_factory():
        seen += int(images.shape[0])
    assert seen == count, (seen, count)
    return count / (time.perf_counter() - start)


def summary(rates: list[float]) -> str:
    median = statistics.median(rates)
    return f"median {median:7.1f} img/s  (min {min(rates):.1f}, max {max(rates):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, help="VOC-format root (default: synthetic data)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=240, help="synthetic images to generate")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=384)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = write_synthetic_voc(
                Path(scratch) / "voc", count=args.count, seed=0, size=(500, 375), val_fraction=0.01
            )
        ids = voc.resolve_split(root, args.split)
        size = (args.input_size, args.input_size)
        big = (round(args.input_size * 444 / 384),) * 2
        common = dict(batch_size=args.batch_size, input_size=size, resize_before_crop=big)
        start = time.perf_counter()
        ours = make_dataset(
            root,
            args.split,
            augment=True,
            shuffle=True,
            seed=0,
            index_dir=Path(scratch) / "index",
            **common,
        )
        prepare_s = time.perf_counter() - start  # one-time mask check and conversion
        book = book_style_dataset(root, ids, seed=0, **common)

        shape = f"batch {args.batch_size}, {size[0]}x{size[1]}"
        print(f"{len(ids)} images of {root} ({args.split}), {shape}")
        print(f"one-time check and index-mask conversion (ours): {prepare_s:.2f} s")
        # First epochs: ours decodes and fills its cache; both trace their graphs.
        ours_cold = epoch_rate(lambda: ours, len(ids))
        book_cold = epoch_rate(lambda: book, len(ids))
        ours_rates, book_rates = [], []
        for _ in range(args.epochs):
            ours_rates.append(epoch_rate(lambda: ours, len(ids)))
            book_rates.append(epoch_rate(lambda: book, len(ids)))
        ratios = [o / b for o, b in zip(ours_rates, book_rates, strict=True)]
        print(
            f"first epoch:  ours {ours_cold:7.1f} img/s, book-style {book_cold:7.1f} img/s "
            f"({ours_cold / book_cold:.2f}x)"
        )
        print(f"later epochs: ours       {summary(ours_rates)}")
        print(f"              book-style {summary(book_rates)}")
        print(
            f"ratio ours/book over {args.epochs} interleaved epoch pairs: median "
            f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
