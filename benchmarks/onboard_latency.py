"""Onboard latency per frame: float32 / float16 / int8 TFLite and ONNX Runtime, both backbones.

For each backbone a run folder with freshly initialised weights (ImageNet weights cannot be
downloaded here; kernels scaled ×1.5 so activations have a trained model's range for the int8
calibration) and a small synthetic training split is written, converted the way
``export-tflite`` and ``export-onnx`` convert (verification is skipped: random weights have no
answers worth comparing; agreement is measured on a trained run by the exports themselves),
and every model is timed interleaved in one process: per round, each variant answers
``--calls`` frames and the round's median is kept; the table gives the median and min–max
over rounds. A frame's time is what the vehicle pays from an RGB frame to a class map at the
frame's size: for int8 (a fixed-size network) it includes the runner's two OpenCV resizes.
"int8, resize in model" is the measured alternative (the whole graph at a static frame size,
post-processing in float), kept only here. Interpreter: ``ai_edge_litert`` when installed,
else TensorFlow's ``tf.lite.Interpreter`` (same runtime); the first line says which.

    python benchmarks/onboard_latency.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

FRAME_SIZES = ((256, 320), (480, 640))


def interpreter_factory():
    """(name, ``Interpreter`` class) of the TFLite runtime this machine has."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return "ai_edge_litert", Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        warnings.simplefilter("ignore", UserWarning)
        return "tf.lite.Interpreter (TensorFlow)", tf.lite.Interpreter


def random_run(folder: Path, backbone: str, input_size: tuple[int, int]):
    """A run folder with fresh weights and a synthetic VOC root with a training split."""
    from training.config import TrainConfig
    from training.data import voc
    from training.data.synth import write_synthetic_voc
    from training.learning.run_folder import RunFolder

    data = write_synthetic_voc(folder / "voc", count=16, seed=1, size=(320, 240))
    config = TrainConfig(data=str(data), out=str(folder / backbone), input_size=input_size,
                         backbone=backbone, backbone_weights=None)  # fmt: skip
    run = RunFolder(folder / backbone)
    run.write_config(config)
    voc.write_split_lists(data, run.splits, ("train", "val"))
    model = run.build_model()
    model.set_weights([w * 1.5 if w.ndim == 4 else w for w in model.get_weights()])
    model.save_weights(run.best_weights)
    return run, config, model


def variants(run, config, model, frame_size, threads, interpreter):
    """label → segment(frame [H,W,3]) → class map [H,W], for one backbone and frame size."""
    import tensorflow as tf

    from client.contract import INPUT_DEFAULTS, OUTPUT_SIZE, SEGMENT
    from training.config import TfliteOptions
    from training.export.onboard import runner_resize
    from training.export.onnx import convert_to_onnx, onnx_runner
    from training.export.rewrites import with_explicit_padding
    from training.export.saved_model import model_metadata, save_serving_model, serving_functions
    from training.export.tflite import (
        _representative,
        convert_saved_model,
        fixed_network_size,
        tflite_flatbuffer,
    )
    from training.model.inference_graph import segment_frames

    def tflite(flatbuffer):
        runner = interpreter(model_content=flatbuffer, num_threads=threads)
        signature = runner.get_signature_runner(SEGMENT.name)
        extra = {}  # a model that resizes takes the maps' size; [[0, 0]]: the frame's
        if OUTPUT_SIZE in signature.get_input_details():
            extra[OUTPUT_SIZE] = np.int32(INPUT_DEFAULTS[OUTPUT_SIZE])
        return lambda frames: signature(images=frames, **extra)

    found = {}
    for optimize in ("none", "float16", "int8"):
        options = TfliteOptions(optimize=optimize, frame_size=frame_size)
        flatbuffer, shape = tflite_flatbuffer(run, config, model, options)
        segment = tflite(flatbuffer)
        if optimize == "int8":
            segment = runner_resize(segment, tuple(shape[1:3]))
        label = {"none": "float32", "float16": "float16 weights", "int8": "int8"}[optimize]
        found[f"TFLite {label}"] = (segment, len(flatbuffer))

    def convert(at: tuple[int, int], graph_size: tuple[int, int], resize: str, optimize: str):
        def graph(images):
            logits = lambda x: model(x, training=False)  # noqa: E731
            return segment_frames(logits, images, input_size=graph_size,
                                  output_stride=config.output_stride, resize=resize)  # fmt: skip

        with tempfile.TemporaryDirectory() as staging:
            save_serving_model(
                staging, {SEGMENT.name: (graph, (tf.TensorSpec([1, *at, 3], tf.uint8),))}
            )
            calibration = _representative(run, config, at)
            return convert_saved_model(staging, optimize, calibration)

    # The alternatives: int8 with the resizes in the graph (at the frame's static size), and
    # float32 at the fixed network size with the runner's resizes (what int8 alone buys).
    size = fixed_network_size(config, TfliteOptions(frame_size=frame_size))
    flatbuffer = convert(frame_size, config.input_size, "aspect", "int8")
    found["TFLite int8, resize in model"] = (tflite(flatbuffer), len(flatbuffer))
    flatbuffer = convert(size, size, "stretch", "none")
    found["TFLite float32, runner resizes"] = (
        runner_resize(tflite(flatbuffer), size), len(flatbuffer))  # fmt: skip

    functions = serving_functions(with_explicit_padding(model), model_metadata(config, "aspect"))
    onnx_model = convert_to_onnx(functions[SEGMENT.name][0], 17)
    found["ONNX Runtime float32"] = (onnx_runner(onnx_model, threads)[0], len(onnx_model))
    return found, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="mobilenetv2,resnet50")
    parser.add_argument("--input-size", type=int, default=384, help="training size (square)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5, help="frames per variant per round")
    args = parser.parse_args()
    from training.data.synth import synthetic_frame

    runtime, interpreter = interpreter_factory()
    print(f"TFLite runtime: {runtime}; {args.threads} thread(s); ONNX Runtime CPU provider")
    work = Path(tempfile.mkdtemp(prefix="onboard-latency-"))
    rows = []
    for backbone in args.backbones.split(","):
        run, config, model = random_run(work, backbone, (args.input_size,) * 2)
        for frame_size in FRAME_SIZES:
            found, network = variants(run, config, model, frame_size, args.threads, interpreter)
            frame = synthetic_frame(*frame_size, 0)[None]
            times = {label: [] for label in found}
            for segment, _ in found.values():
                segment(frame)  # allocation and first-call costs stay out of the table
            for _ in range(args.rounds):
                for label, (segment, _) in found.items():  # interleaved: each round, all
                    calls = []
                    for _ in range(args.calls):
                        start = time.perf_counter()
                        np.asarray(segment(frame)["class_map"])
                        calls.append((time.perf_counter() - start) * 1e3)
                    times[label].append(statistics.median(calls))
            base = statistics.median(times["TFLite float32"])
            for label, (_, size) in found.items():
                med = statistics.median(times[label])
                rows.append((backbone, f"{frame_size[0]}x{frame_size[1]}",
                             f"{network[0]}x{network[1]}", label, size / 1e6, med,
                             min(times[label]), max(times[label]), med / base))  # fmt: skip
            print(f"{backbone} {frame_size} done", flush=True)
    print("\n| backbone | frame | network | variant | MB | median ms | min–max ms | × float32 |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for b, f, n, label, mb, med, lo, hi, ratio in rows:
        print(f"| {b} | {f} | {n} | {label} | {mb:.1f} | {med:.1f} | {lo:.1f}–{hi:.1f} "
              f"| {ratio:.2f} |")  # fmt: skip
    print(f"\ncommand: python benchmarks/onboard_latency.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
