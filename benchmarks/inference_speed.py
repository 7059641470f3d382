"""How fast the exported model answers one frame, next to ONNX Runtime on the same weights.

Exports a run twice into a temporary model repository — as export does by default (atrous
convolutions on Conv2D's own dilations) and with ``--no-native-dilation`` (TensorFlow's
space-to-batch lowering) — converts the second to ONNX with tf2onnx (the whole
``serving_default`` graph: resize, network, resize back, argmax), and times, interleaved in
one process, one 480×640 frame at batch 1 through:

- each export's ``serving_default`` (``tf.saved_model.load``, NumPy in and out);
- ONNX Runtime on the converted graph (CPU, as many threads as cores): the measuring stick;
- the network alone at its input size (no resizes): ONNX Runtime (tf2onnx from the Keras
  model), the Keras model in a ``tf.function``, and the same with native dilation.

Also measured in the same run: a 2048³ float32 matmul in TensorFlow (the machine's practical
peak), against which each path's achieved GFLOP/s is shown (2 × the network's multiply-adds at
that input size, from ``training.model_info``). Pixel agreement of every path with the
unoptimized export is printed first. ONNX is a benchmark tool, not a product dependency:
``pip install -e '.[bench]'``.

    python benchmarks/inference_speed.py --run demo_out/runs/demo --resize stretch
    python benchmarks/inference_speed.py --run runs/resnet50 --rounds 30

Prints a markdown table (median and min–max latency in ms, GFLOP/s, ratio to ONNX Runtime as
the median of per-round ratios) and the command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _set_threads() -> int:
    import tensorflow as tf

    cores = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return cores


def matmul_gflops(repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    product = tf.function(lambda x: tf.linalg.matmul(x, x))
    product(a).numpy()
    best = min(_timed(lambda: product(a).numpy()) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def frame(height: int = 480, width: int = 640) -> np.ndarray:
    from training.synth import synthetic_frame

    return np.asarray(synthetic_frame(height, width, seed=0), np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run folder")
    parser.add_argument("--resize", choices=("aspect", "stretch"), default="aspect")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="keep the exports and the .onnx here")
    args = parser.parse_args()
    cores = _set_threads()

    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx.convert

    from training.export import export_run, load_run_model
    from training.fast_inference import with_native_dilation
    from training.inference_graph import network_size
    from training.model_info import describe
    from training.run import RunFolder

    work = args.keep or Path(tempfile.mkdtemp(prefix="inference-speed-"))
    run = RunFolder(args.run)
    config = run.read_config()
    image = frame()
    exports, folders = {}, {}
    for label, native in (("export (default)", True), ("export --no-native-dilation", False)):
        report = export_run(
            run.path, work / "models", resize=args.resize, native_dilation=native,
            warmup_sizes=((48, 64),), min_agreement=0.999,
        )  # fmt: skip
        exports[label] = tf.saved_model.load(str(report.path)).signatures["serving_default"]
        folders[label] = report.path
        print(f"{label}: {report.path}")
    onnx_path = work / "space_to_batch.onnx"
    reference_dir = folders["export --no-native-dilation"]
    os.system(
        f"{shlex.quote(sys.executable)} -m tf2onnx.convert --saved-model {reference_dir} "
        f"--signature_def serving_default --opset 17 --output {onnx_path} > /dev/null 2>&1"
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = cores
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    size = network_size(
        tf.constant(image.shape[:2]),
        input_size=tuple(config.input_size),
        output_stride=config.output_stride,
        resize=args.resize,
    ).numpy()
    model = load_run_model(run)
    keras_fn = tf.function(lambda x: model(x, training=False))
    normalized = tf.image.resize(tf.cast(image[None], tf.float32) / 255.0, size)
    info = describe(
        config.backbone,
        input_size=(int(size[0]), int(size[1])),
        output_stride=config.output_stride,
        num_classes=len(config.class_names),
    )
    flops = 2 * info.multiply_adds

    # The network alone in ONNX, like the Keras row: tf2onnx folds TensorFlow's space-to-batch
    # lowering back into dilated Conv nodes.
    network_onnx = work / "network.onnx"
    spec = (tf.TensorSpec((1, int(size[0]), int(size[1]), 3), tf.float32, name="x"),)
    plain = tf.function(lambda x: model(x, training=False), input_signature=spec)
    tf2onnx.convert.from_function(
        plain, input_signature=spec, opset=17, output_path=str(network_onnx)
    )
    network_session = ort.InferenceSession(
        str(network_onnx), options, providers=["CPUExecutionProvider"]
    )
    network_input = {network_session.get_inputs()[0].name: normalized.numpy()}
    native_model = with_native_dilation(model)
    native_fn = tf.function(lambda x: native_model(x, training=False))

    batch = image[None]
    paths = {
        label: (lambda f=fn: f(images=batch)["class_map"].numpy()) for label, fn in exports.items()
    }
    paths["ONNX Runtime (tf2onnx)"] = lambda: session.run(["class_map"], {"images": batch})[0]
    paths["ONNX Runtime, network only"] = lambda: network_session.run(None, network_input)[0]
    paths["Keras model, tf.function, network only"] = lambda: keras_fn(normalized).numpy()
    paths["same, native dilation"] = lambda: native_fn(normalized).numpy()

    reference = paths["export --no-native-dilation"]()
    print(f"\nframe 480×640, network input {size[0]}×{size[1]}, {flops / 1e9:.1f} GFLOP per frame")
    for label, call in paths.items():
        if "network only" in label or label.startswith("same"):
            continue
        equal = np.mean(call() == reference) * 100
        print(f"{label}: {equal:.4f}% pixels equal to the unoptimized export")
    for call in paths.values():  # warm up every path
        call()
        call()
    peak = matmul_gflops()
    times: dict[str, list[float]] = {label: [] for label in paths}
    labels = list(paths)
    for index in range(args.rounds):
        for label in labels[index % len(labels) :] + labels[: index % len(labels)]:
            times[label].append(_timed(paths[label]))
    peak = (peak + matmul_gflops()) / 2
    onnx = times["ONNX Runtime (tf2onnx)"]
    print(
        f"\nmatmul peak (2048³ float32 in TensorFlow, mean of before and after): {peak:.0f} GFLOP/s"
    )
    print("\n| path | median (ms) | min–max (ms) | GFLOP/s | × ONNX Runtime (median of rounds) |")
    print("| --- | --- | --- | --- | --- |")
    for label, samples in times.items():
        median = statistics.median(samples)
        ratio = statistics.median(a / b for a, b in zip(samples, onnx, strict=True))
        spread = f"{min(samples) * 1000:.1f}–{max(samples) * 1000:.1f}"
        achieved = flops / median / 1e9
        print(
            f"| {label} | {median * 1000:.1f} | {spread} "
            f"| {achieved:.0f} ({achieved / peak * 100:.0f}% of peak) | {ratio:.3f} |"
        )
    print(f"\n{args.rounds} rounds, {cores} threads; command: python benchmarks/inference_speed.py "
          + " ".join(shlex.quote(a) for a in sys.argv[1:]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
