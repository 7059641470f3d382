"""ONNX export for vehicles that run ONNX Runtime (Jetson-class computers, TensorRT).

The ``serving_default`` graph of the SavedModel export (resize in the graph, any frame size,
``images`` uint8 [N,H,W,3] RGB and ``output_size`` int32 [1,2] (``[[0, 0]]``: the frame's size)
→ ``class_map``, ``confidence`` uint8 [N,H,W]) converted by
tf2onnx, verified in ONNX Runtime against the float32 Keras model, written with the sidecar
every onboard export has (:mod:`training.export.onboard`).

Dilated convolutions are rewritten first (:func:`~training.export.rewrites.with_explicit_padding`):
tf2onnx turns ``padding="SAME"`` into ``auto_pad=SAME_UPPER``, which ONNX Runtime refuses with
a dilation ("Dilation not supported for AutoPadType::SAME_UPPER"); an explicit Pad and a VALID
Conv with the same dilation and weights is what it runs.

    report = export_onnx("runs/voc", "deeplabv3.onnx")
    # on the vehicle, without TensorFlow:
    session = onnxruntime.InferenceSession("deeplabv3.onnx")
    class_map, confidence = session.run(
        ["class_map", "confidence"], {"images": rgb[None], "output_size": [[0, 0]]}
    )
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from client.contract import CLASS_MAP, CONFIDENCE, IMAGES, OUTPUT_SIZE, SEGMENT
from training.config import OnnxOptions
from training.export.onboard import (
    OnboardExportReport,
    check_output_path,
    sidecar,
    verify_onboard,
    write_model,
)
from training.export.rewrites import with_explicit_padding
from training.export.saved_model import model_metadata, serving_functions
from training.learning.run_folder import RunFolder
from training.model.inference_graph import DEFAULT_OUTPUT_SIZE

INPUT_SHAPE = [None, None, None, 3]
OUTPUT_SIZE_SHAPE = [None, 2]


def convert_to_onnx(function, opset: int) -> bytes:
    """``function`` (uint8 ``images`` [N,H,W,3], int32 ``output_size`` [M,2] → dict of
    outputs) as an ONNX model whose inputs and outputs carry the contract's names."""
    import tf2onnx

    specs = [
        tf.TensorSpec(INPUT_SHAPE, tf.uint8, name=IMAGES),
        tf.TensorSpec(OUTPUT_SIZE_SHAPE, tf.int32, name=OUTPUT_SIZE),
    ]
    traced = tf.function(function)
    concrete = traced.get_concrete_function(*specs)
    # tf2onnx names graph outputs after the function's tensors (Identity:0, …), in the order of
    # the flattened output dict (sorted keys); map them back to the contract's names.
    names = dict(
        zip(
            [tensor.name for tensor in concrete.outputs],
            sorted(concrete.structured_outputs),
            strict=True,
        )
    )
    try:
        model, _ = tf2onnx.convert.from_function(traced, input_signature=specs, opset=opset)
    except Exception as error:  # tf2onnx raises plain exceptions of many kinds
        raise RuntimeError(f"ONNX conversion failed: {error}") from error
    _rename_outputs(model, names)
    return model.SerializeToString()


def _rename_outputs(model, names: dict[str, str]) -> None:
    for output in model.graph.output:
        new = names.get(output.name)
        if new is None or new == output.name:
            continue
        for node in model.graph.node:
            node.output[:] = [new if o == output.name else o for o in node.output]
            node.input[:] = [new if i == output.name else i for i in node.input]
        output.name = new


def onnx_runner(model: bytes, num_threads: int | None = None):
    """An ONNX Runtime session on the CPU and a ``segment(frames)`` → outputs dict."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    outputs = [CLASS_MAP, CONFIDENCE]

    def segment(frames, output_size=DEFAULT_OUTPUT_SIZE):
        inputs = {IMAGES: frames, OUTPUT_SIZE: np.asarray(output_size, np.int32)}
        return dict(zip(outputs, session.run(outputs, inputs), strict=True))

    return segment, session


def export_onnx(
    run_dir: str | Path, out: str | Path, options: OnnxOptions | None = None, **changes
) -> OnboardExportReport:
    """Writes ``out`` (.onnx) and its ``.json`` sidecar once ONNX Runtime's answers pass
    verification. ``options`` (default :class:`~training.config.OnnxOptions`) with ``changes``
    to any of its fields applied."""
    started = time.perf_counter()
    options = dataclasses.replace(options or OnnxOptions(), **changes)
    out = check_output_path(out, ".onnx")
    run = RunFolder(run_dir)
    config = run.read_config()
    model = run.load_model()
    functions = serving_functions(
        with_explicit_padding(model), model_metadata(config, options.resize)
    )
    onnx_model = convert_to_onnx(functions[SEGMENT.name][0], options.opset)
    segment, _ = onnx_runner(onnx_model)
    verification = verify_onboard(
        run,
        config,
        segment,
        reference=model,
        resize=options.resize,
        min_agreement=options.min_agreement,
        model_text="uint8 [?,?,?,3]",
        segment_sized=segment,
        notes=[f"ONNX opset {options.opset}, run by ONNX Runtime (CPU)"],
    )
    if not verification.passed:
        raise RuntimeError(
            f"ONNX verification failed, nothing written to {out}:\n{verification.text()}"
        )
    info = sidecar(
        out,
        run,
        config,
        resize=options.resize,
        runtime="onnxruntime",
        optimize="none",
        input_shape=INPUT_SHAPE,
        resize_in="model",
        quantization=None,
        verification=verification,
    )
    return write_model(out, onnx_model, info, started, verification)
