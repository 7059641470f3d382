"""TFLite export for onboard computers that run the model themselves (no model server).

The ``serving_default`` graph of the SavedModel export — resize in the graph, class map and
confidence out at the frame's own size — converted with the TFLite converter, verified the
same way against the Keras model, written with a JSON sidecar for what the ``metadata``
signature gives a server's clients.

What differs from the SavedModel contract (TFLite allows no more):

- one signature, ``serving_default`` (``images`` uint8 [N,H,W,3] and ``output_size`` int32
  [1,2] → ``class_map``, ``confidence`` uint8 [N,H,W], or [N,h,w] for an output size other
  than ``[[0, 0]]``); TFLite has no input defaults, so ``output_size`` is always given; the
  signature runner resizes the interpreter to each frame size (a size change costs a
  re-allocation, so keep one camera size);
- no ``segment_jpeg``: TFLite has no image-decoding op; decode with OpenCV on the vehicle
  (and convert its BGR to RGB);
- no ``metadata`` signature: ``<name>.json`` beside the model holds class names, palette,
  input size, output stride and resize mode;
- ``--optimize float16`` stores weights as float16 (half the file; computed in float32 on
  CPUs, in float16 by GPU delegates);
- ``--optimize int8``: full-integer network (int8 weights and activations, calibrated on
  frames of the run's training split) at one fixed network size, chosen for ``frame_size``
  (480×640 by default); the onboard runner resizes the frame to it and the class map back
  (sidecar ``"resize_in": "runner"``, :func:`training.export.onboard.runner_resize`). The
  resizes in the model cost more than the int8 network saves (docs/performance.md), and the
  converter would quantize the frame-size arithmetic. The top-k and softmax after the
  network stay float32 (a few ops at the network size): quantized logits tie.

On the vehicle (``pip install ai-edge-litert``, the TFLite runtime without TensorFlow)::

    from ai_edge_litert.interpreter import Interpreter
    segment = Interpreter("deeplabv3.tflite").get_signature_runner()
    rgb_frame = cv2.cvtColor(camera_frame, cv2.COLOR_BGR2RGB)
    class_map = segment(images=rgb_frame[None], output_size=np.array([[0, 0]], np.int32))[
        "class_map"
    ][0]
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from client.contract import IMAGES, OUTPUT_SIZE, SEGMENT
from training.config import TFLITE_OPTIMIZATIONS, TfliteOptions, TrainConfig, default_of
from training.export.onboard import (
    OnboardExportReport,
    check_output_path,
    read_sidecar,  # noqa: F401 (re-exported: the TFLite sidecar's reader)
    runner_resize,
    sidecar,
    verify_onboard,
    write_model,
)
from training.export.saved_model import model_metadata, save_serving_model, serving_functions
from training.export.verify import real_frames
from training.learning.run_folder import RunFolder
from training.model.inference_graph import DEFAULT_OUTPUT_SIZE, network_size, segment_frames

REPRESENTATIVE_FRAMES = 64
"""Training frames the int8 calibration runs (more changed nothing measurable)."""
FLOAT_OPS = ("TOPK_V2", "EXP", "SUM", "DIV", "SUB")
"""int8: the class map and confidence after the network, kept in float32 (selective
quantization): quantized logits tie, and a quantized 1/Σexp divides by zero."""


def convert_saved_model(
    saved_model_dir: str | Path,
    optimize: str = default_of(TfliteOptions, "optimize"),
    representative: Callable[[], Iterator[dict]] | None = None,
) -> bytes:
    """The ``serving_default`` signature of a SavedModel as a TFLite flatbuffer; ``int8``
    calibrates on ``representative()`` (dicts of ``images``)."""
    if optimize not in TFLITE_OPTIMIZATIONS:
        raise ValueError(f"optimize must be one of {TFLITE_OPTIMIZATIONS}, got {optimize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SEGMENT.name]
    )
    if optimize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if optimize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        if optimize != "int8":
            return converter.convert()
        if representative is None:
            raise ValueError("int8 needs representative frames")
        converter.representative_dataset = representative
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=list(FLOAT_OPS)
            ),
        )
        return debugger.get_nondebug_quantized_model()
    except Exception as error:  # the converter raises its own ConverterError and others
        raise RuntimeError(f"TFLite conversion of {saved_model_dir} failed: {error}") from error


def tflite_runner(model: bytes, num_threads: int | None = None):
    """A signature runner for ``serving_default`` (TensorFlow's bundled interpreter)."""
    with warnings.catch_warnings():
        # TF warns that tf.lite.Interpreter moves to ai_edge_litert; same runtime, same API.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_content=model, num_threads=num_threads)
    return interpreter.get_signature_runner(SEGMENT.name), interpreter


def fixed_network_size(config: TrainConfig, options: TfliteOptions) -> tuple[int, int]:
    """(height, width) an int8 model runs at: the network size of ``options.frame_size``."""
    size = network_size(
        tf.constant(options.frame_size),
        input_size=config.input_size,
        output_stride=config.output_stride,
        resize=options.resize,
    )
    return tuple(int(v) for v in size.numpy())


def _representative(run: RunFolder, config: TrainConfig, size: tuple[int, int]):
    """Calibration frames from the run's training split, resized as the runner resizes."""
    train_list = f"{config.train_split}.txt"  # train.txt, train_aug.txt, …
    frames = real_frames(run, config, REPRESENTATIVE_FRAMES, lists=(train_list,))
    if not frames:
        raise FileNotFoundError(
            f"{run.splits / train_list}: no training frame found under {config.data} "
            "(int8 calibrates on the run's training split)"
        )
    pixels = [cv2.resize(f.pixels, size[::-1], interpolation=cv2.INTER_LINEAR) for f in frames]
    return lambda: ({IMAGES: p[None]} for p in pixels)


def tflite_flatbuffer(
    run: RunFolder, config: TrainConfig, model: keras.Model, options: TfliteOptions
) -> tuple[bytes, list[int | None]]:
    """The converted model and its input shape (None: any size)."""
    functions = serving_functions(model, model_metadata(config, options.resize))
    representative, shape = None, [None, None, None, 3]
    if options.optimize == "int8":
        size = fixed_network_size(config, options)
        shape = [1, *size, 3]

        def fixed(images):  # the frame arrives at the network size: no resize in the graph
            logits = lambda x: model(x, training=False)  # noqa: E731
            return segment_frames(
                logits, images, input_size=size, output_stride=config.output_stride,
                resize="stretch",
            )  # fmt: skip

        functions = {SEGMENT.name: (fixed, (tf.TensorSpec(shape, tf.uint8),))}
        representative = _representative(run, config, size)
    with tempfile.TemporaryDirectory(prefix="tflite-export-") as staging:
        save_serving_model(staging, {SEGMENT.name: functions[SEGMENT.name]})
        return convert_saved_model(staging, options.optimize, representative), shape


def _quantization(optimize: str, interpreter) -> dict | None:
    if optimize == "float16":
        return {"weights": "float16", "activations": "float32"}
    if optimize != "int8":
        return None
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    return {
        "weights": "int8",
        "activations": "int8",
        "float_ops": list(FLOAT_OPS),
        # the model takes raw uint8 pixels and quantizes them itself: (0.0, 0) means none
        "input": {"scale": scale, "zero_point": zero_point},
    }


def export_tflite(
    run_dir: str | Path, out: str | Path, options: TfliteOptions | None = None, **changes
) -> OnboardExportReport:
    """Writes ``out`` (.tflite) and its ``.json`` sidecar once the model passes verification.

    ``options`` (default :class:`~training.config.TfliteOptions`) with ``changes`` to any of
    its fields applied (``export_tflite(run, out, optimize="int8")``)."""
    started = time.perf_counter()
    options = dataclasses.replace(options or TfliteOptions(), **changes)
    out = check_output_path(out, ".tflite")
    run = RunFolder(run_dir)
    config = run.read_config()
    model = run.load_model()
    flatbuffer, shape = tflite_flatbuffer(run, config, model, options)

    signature_runner, interpreter = tflite_runner(flatbuffer)

    # A model that resizes takes the optional output size too (TFLite has no defaults).
    def segment_sized(pixels, output_size=DEFAULT_OUTPUT_SIZE):
        return signature_runner(**{IMAGES: pixels, OUTPUT_SIZE: np.int32(output_size)})

    segment = segment_sized
    resize_in = "model"
    notes = []
    if options.optimize == "float16":
        # TFLite folds batch norms before rounding weights: the reference is the float32 model.
        notes.append("weights stored as float16")
    if options.optimize == "int8":  # a fixed network without the output size: the runner's
        segment = lambda pixels: signature_runner(**{IMAGES: pixels})  # noqa: E731
        segment, resize_in = runner_resize(segment, tuple(shape[1:3])), "runner"
        notes.append(f"int8 network at {shape[1]}x{shape[2]}; frames resized by the runner")
    dims = ",".join("?" if d is None else str(d) for d in shape)
    verification = verify_onboard(
        run,
        config,
        segment,
        resize=options.resize,
        min_agreement=options.agreement_floor,
        model_text=f"uint8 [{dims}]",
        notes=notes,
        reference=model,
        fixed_size=tuple(shape[1:3]) if resize_in == "runner" else None,
        segment_sized=segment_sized if resize_in == "model" else None,
    )
    if not verification.passed:
        raise RuntimeError(
            f"TFLite verification failed, nothing written to {out}:\n{verification.text()}"
        )
    info = sidecar(
        out,
        run,
        config,
        resize=options.resize,
        runtime="tflite",
        optimize=options.optimize,
        input_shape=shape,
        resize_in=resize_in,
        quantization=_quantization(options.optimize, interpreter),
        verification=verification,
    )
    return write_model(out, flatbuffer, info, started, verification)
