"""What DeepLab v3+'s decoder costs per frame, for both backbones, in the graph export serves.

Builds v3 and v3+ (random weights; time does not depend on their values) for each backbone,
applies export's rewrites (:func:`training.export.rewrites.optimize_for_inference`: native
atrous convolutions, batch norms folded) and times the serving graph of
:func:`training.model.inference_graph.segment_frames` (uint8 frame in; resize, network,
resize back, top class) on one synthetic frame at batch 1, the four paths interleaved round
by round so that the machine's drift hits each alike. Multiply-adds are counted by
:mod:`training.model.info` at the network's input size; the last lines give what two plain
3×3 convolutions in the decoder (the paper's ResNet variant) would count instead of the
separable pair.

    python benchmarks/decoder_cost.py                       # 480×640 frames, 15 rounds
    python benchmarks/decoder_cost.py --frame 240x320 --rounds 30 --backbone mobilenetv2

Prints a markdown table: multiply-adds, median and min–max ms per frame, and v3+ / v3 as the
median of per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from training.data.synth import synthetic_frame
from training.export.rewrites import optimize_for_inference
from training.model.deeplab import build_deeplabv3
from training.model.inference_graph import segment_frames
from training.model.info import describe

NUM_CLASSES = 21


def serving_path(backbone: str, decoder: bool, size: tuple[int, int]):
    """The graph export serves for a random v3 / v3+ model trained at ``size``."""
    model = build_deeplabv3(NUM_CLASSES, backbone=backbone, backbone_weights=None, decoder=decoder)
    # Random DeepLab logits vanish (~1e-12) through untrained batch norms; scaled kernels keep
    # them in the normal float range (denormals would time the CPU's slow path).
    model.set_weights([w * 1.5 if w.ndim == 4 else w for w in model.get_weights()])
    served = optimize_for_inference(model)
    spec = tf.TensorSpec([1, None, None, 3], tf.uint8)

    @tf.function(input_signature=[spec])
    def segment(frames):
        return segment_frames(served, frames, input_size=size, output_stride=16)["class_map"]

    return segment


def plain_decoder_multiply_adds(backbone: str, size: tuple[int, int]) -> tuple[int, int]:
    """(separable pair, two plain 3×3 convolutions) multiply-adds of the decoder's 3×3 units."""
    model = build_deeplabv3(
        NUM_CLASSES,
        backbone=backbone,
        backbone_weights=None,
        decoder=True,
        input_shape=(*size, 3),
    )
    separable = plain = 0
    for unit in ("decoder_conv1", "decoder_conv2"):
        depthwise = model.get_layer(f"{unit}_depthwise")
        pointwise = model.get_layer(f"{unit}_pointwise_conv")
        positions = int(np.prod(pointwise.output.shape[1:3]))
        channels_in, channels_out = depthwise.kernel.shape[2], pointwise.kernel.shape[3]
        separable += positions * (9 * channels_in + channels_in * channels_out)
        plain += positions * 9 * channels_in * channels_out
    return separable, plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame", default="480x640", help="HEIGHTxWIDTH of the camera frame")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--backbone", nargs="+", default=["mobilenetv2", "resnet50"], help="backbones to time"
    )
    args = parser.parse_args()
    height, width = (int(v) for v in args.frame.lower().split("x"))
    size = (height, width)  # trained at the frame's size: the network runs at 480×640 itself
    frame = np.asarray(synthetic_frame(height, width, seed=0), np.uint8)[None]

    paths, counts = {}, {}
    for backbone in args.backbone:
        for decoder in (False, True):
            label = (backbone, "v3+" if decoder else "v3")
            paths[label] = serving_path(backbone, decoder, size)
            counts[label] = describe(
                backbone, input_size=size, num_classes=NUM_CLASSES, decoder=decoder
            ).multiply_adds
            for _ in range(2):  # trace, then warm up
                class_map = paths[label](frame).numpy()
            assert class_map.shape == (1, height, width), class_map.shape
            print(f"{label}: ready", flush=True)

    times: dict[tuple[str, str], list[float]] = {label: [] for label in paths}
    labels = list(paths)
    for index in range(args.rounds):
        for label in labels[index % len(labels) :] + labels[: index % len(labels)]:
            started = time.perf_counter()
            paths[label](frame).numpy()
            times[label].append(time.perf_counter() - started)

    print(f"\nframe {height}×{width}, network at {height}×{width}, output stride 16, batch 1")
    print("\n| backbone | model | multiply-adds | median (ms) | min–max (ms) | v3+ / v3 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (backbone, model), samples in times.items():
        ratio = "—"
        if model == "v3+":
            base = times[(backbone, "v3")]
            ratio = f"{statistics.median(a / b for a, b in zip(samples, base, strict=True)):.2f}"
        print(
            f"| {backbone} | {model} | {counts[(backbone, model)] / 1e9:.2f} B "
            f"| {statistics.median(samples) * 1000:.1f} "
            f"| {min(samples) * 1000:.1f}–{max(samples) * 1000:.1f} | {ratio} |"
        )
    print()
    for backbone in args.backbone:
        separable, plain = plain_decoder_multiply_adds(backbone, size)
        print(
            f"{backbone}: the decoder's two separable 3×3 units count {separable / 1e9:.2f} B "
            f"multiply-adds; two plain 3×3 convolutions would count {plain / 1e9:.2f} B"
        )
    print(
        f"\n{args.rounds} rounds, interleaved; command: python benchmarks/decoder_cost.py "
        + " ".join(shlex.quote(a) for a in sys.argv[1:])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
