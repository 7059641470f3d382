"""How fast the exported model answers one frame, next to ONNX Runtime on the same weights.

Exports a run several times into a temporary model repository — as export does by default
(native atrous convolutions, batch norms folded), with each of those turned off by its flag,
with neither (the unoptimized export every other path is compared
with), and the default in bfloat16 — converts the unoptimized one to ONNX with tf2onnx (the
whole ``serving_default`` graph: resize, network, resize back, top class), and times,
interleaved in one process, one 480×640 frame at batch 1 through:

- each export's ``serving_default`` (``tf.saved_model.load``, NumPy in and out), and the
  default export asked for the class map alone, as the edge client asks (the servers prune
  the confidence's softmax away: ``serving.servable.LoadedVersion.outputs_of``);
- ONNX Runtime on the converted graph (CPU, one thread per core): the measuring stick;
- the network alone at its input size (no resizes): ONNX Runtime (tf2onnx from the Keras
  model), the Keras model in a ``tf.function``, the same with export's rewrites, and those
  compiled with XLA.

Also measured in the same run: a 2048³ float32 matmul in TensorFlow (the machine's practical
peak), against which each path's achieved GFLOP/s is shown (2 × the network's multiply-adds at
that input size, from ``training.model.info``). Pixel agreement of every path with the
unoptimized export is printed first. tf2onnx, onnx and ONNX Runtime come with ``make setup``
(``export-onnx`` uses them too). ``--intra-op/--inter-op`` set TensorFlow's thread pools (0:
TensorFlow's defaults) to compare thread settings run against run.

    python benchmarks/inference_speed.py --run demo_out/runs/demo --resize stretch
    python benchmarks/inference_speed.py --run runs/resnet50 --rounds 30

Prints a markdown table (median and min–max latency in ms, GFLOP/s, ratio to ONNX Runtime
network-only as the median of per-round ratios) and the command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from client import contract

REPO = Path(__file__).resolve().parents[1]
UNOPTIMIZED = "export, both off (the reference)"
ONNX_NETWORK = "ONNX Runtime, network only"
sys.path.insert(0, str(REPO))


def _set_threads(intra_op: int, inter_op: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


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
    from training.data.synth import synthetic_frame

    return np.asarray(synthetic_frame(height, width, seed=0), np.uint8)


def _exports(run: Path, work: Path, resize: str) -> dict[str, Path]:
    """Label → version folder, for each export variant the table shows."""
    from training.export.publish import export_run
    from training.export.rewrites import DEFAULT_OPTIMIZATIONS, NO_OPTIMIZATIONS

    default = DEFAULT_OPTIMIZATIONS
    variants = {
        "export (default)": (default, "float32"),
        "export --no-fold-batch-norms": (replace(default, fold_batch_norms=False), "float32"),
        "export --no-native-dilation": (replace(default, native_dilation=False), "float32"),
        UNOPTIMIZED: (NO_OPTIMIZATIONS, "float32"),
        "export --precision bfloat16": (default, "bfloat16"),
    }
    folders = {}
    for label, (optimizations, precision) in variants.items():
        report = export_run(
            run, work / "models", resize=resize, optimizations=optimizations, precision=precision,
            warmup_sizes=((48, 64),), min_agreement=0.999 if precision == "float32" else 0.99,
        )  # fmt: skip
        folders[label] = report.path
        print(f"{label}: {report.path}", flush=True)
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a training run folder")
    parser.add_argument("--resize", choices=("aspect", "stretch"), default="aspect")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="keep the exports and the .onnx here")
    parser.add_argument("--intra-op", type=int, default=os.cpu_count() or 1, help="0: TF's default")
    parser.add_argument("--inter-op", type=int, default=1, help="0: TF's default")
    args = parser.parse_args()
    _set_threads(args.intra_op, args.inter_op)
    cores = os.cpu_count() or 1

    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx.convert

    from serving.servable import load_version
    from training.export.rewrites import optimize_for_inference
    from training.learning.run_folder import RunFolder
    from training.model.inference_graph import network_size
    from training.model.info import describe

    work = args.keep or Path(tempfile.mkdtemp(prefix="inference-speed-"))
    run = RunFolder(args.run)
    config = run.read_config()
    image = frame()
    folders = _exports(run.path, work, args.resize)
    exports = {
        label: tf.saved_model.load(str(path)).signatures[contract.SEGMENT.name]
        for label, path in folders.items()
    }
    onnx_path = work / "unoptimized.onnx"
    os.system(
        f"{shlex.quote(sys.executable)} -m tf2onnx.convert --saved-model {folders[UNOPTIMIZED]} "
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
    model = run.load_model()
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
    optimized_model = optimize_for_inference(model)
    optimized_fn = tf.function(lambda x: optimized_model(x, training=False))
    optimized_xla = tf.function(lambda x: optimized_model(x, training=False), jit_compile=True)

    batch = image[None]
    # The signature's inputs, its optional output size given (Python fills no defaults).
    default_size = np.int32(contract.INPUT_DEFAULTS[contract.OUTPUT_SIZE])
    inputs = {contract.IMAGES: batch, contract.OUTPUT_SIZE: default_size}
    paths = {
        label: (lambda f=fn: f(**inputs)[contract.CLASS_MAP].numpy())
        for label, fn in exports.items()
    }
    # What the edge client asks for by default: the class map alone (output_filter), which the
    # servers run as a pruned graph (no confidence softmax).
    default_dir = folders["export (default)"]
    pruned = load_version(
        contract.DEFAULT_MODEL_NAME, int(default_dir.name), default_dir
    ).outputs_of(contract.SEGMENT.name, [contract.CLASS_MAP])
    paths["export (default), class map alone (output_filter)"] = lambda: pruned(**inputs)[
        contract.CLASS_MAP
    ].numpy()
    paths["ONNX Runtime on the unoptimized export (tf2onnx)"] = lambda: session.run(
        [contract.CLASS_MAP], inputs
    )[0]
    paths[ONNX_NETWORK] = lambda: network_session.run(None, network_input)[0]
    paths["Keras model, tf.function, network only"] = lambda: keras_fn(normalized).numpy()
    paths["same, export's rewrites"] = lambda: optimized_fn(normalized).numpy()
    paths["same, XLA (jit_compile=True)"] = lambda: optimized_xla(normalized).numpy()

    reference = paths[UNOPTIMIZED]()
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
    stick = times[ONNX_NETWORK]
    print(
        f"\nmatmul peak (2048³ float32 in TensorFlow, mean of before and after): {peak:.0f} GFLOP/s"
    )
    print(
        "\n| path | median (ms) | min–max (ms) | GFLOP/s | × ONNX Runtime network only "
        "(median of rounds) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for label, samples in times.items():
        median = statistics.median(samples)
        ratio = statistics.median(a / b for a, b in zip(samples, stick, strict=True))
        spread = f"{min(samples) * 1000:.1f}–{max(samples) * 1000:.1f}"
        achieved = flops / median / 1e9
        print(
            f"| {label} | {median * 1000:.1f} | {spread} "
            f"| {achieved:.0f} ({achieved / peak * 100:.0f}% of peak) | {ratio:.3f} |"
        )
    threads = f"intra-op {args.intra_op or 'default'}, inter-op {args.inter_op or 'default'}"
    print(f"\n{args.rounds} rounds, {threads}; command: python benchmarks/inference_speed.py "
          + " ".join(shlex.quote(a) for a in sys.argv[1:]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
