"""The SavedModel every server and client relies on: the contract's signatures around a trained
model, written to a staging folder and verified there (:func:`stage_version`).

Publishing the staged folder as a version (numbering, the atomic rename) is
:mod:`training.export.publish`'s job.

Signatures (:mod:`client.contract`, ``../shared/DESIGN.md``):

- ``serving_default``: ``images`` uint8 [N,H,W,3] → ``class_map``, ``confidence`` uint8 [N,H,W]
- ``segment_jpeg``: ``jpeg`` string [N] (JPEG/PNG bytes) → the same, at the decoded size
- both take an optional ``output_size`` int32 [1,2] or [N,2], default ``[[0, 0]]`` (the frame's
  size): the maps at a planner's resolution (``[N,h,w]``) without resizing logits to the frame
- ``metadata``: ``request`` int32 [N], default ``[0]`` so it may be left out → ``class_names``
  string [N,C], ``palette`` uint8 [N,C,3], ``input_size`` int32 [N,2], ``output_stride``
  int32 [N]. Every output has a leading batch dimension (read row 0) because TF Serving's
  batching session batches *every* signature of a model: it rejects a request with no input
  tensor and splits each output along dimension 0.

    staged = stage_version(RunFolder("runs/voc"), Path("models/deeplabv3/.export-3"), options)
    print(staged.verification.text())
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from client import contract
from training.config import PLAIN_SCALES, RESIZE_MODES, ExportOptions, TrainConfig
from training.export.rewrites import optimize_for_inference
from training.export.verify import VerificationReport, verification_frames, verify_saved_model
from training.export.warmup import DEFAULT_WARMUP_SIZES, write_warmup_requests
from training.learning.run_folder import RunFolder
from training.model.inference_graph import DEFAULT_OUTPUT_SIZE, decode_frames, segment_frames


class ExportError(RuntimeError):
    """The export could not land (bad version, failed verification); nothing was published."""


def model_metadata(config: TrainConfig, resize: str) -> dict:
    """What a client needs besides the class map: the ``metadata`` signature's values, also
    written to ``export.json`` and the TFLite sidecar."""
    return {
        contract.CLASS_NAMES: list(config.class_names),
        contract.PALETTE: [list(color) for color in config.palette],
        contract.INPUT_SIZE: list(config.input_size),
        contract.OUTPUT_STRIDE: config.output_stride,
        "resize": resize,
    }


InputSpecs = tuple[tf.TensorSpec, ...]
"""A signature's inputs, in the order its function takes them."""


def serving_functions(
    model: keras.Model,
    metadata: dict,
    *,
    scales: Sequence[float] = PLAIN_SCALES,
    flip: bool = False,
) -> dict[str, tuple[Callable, InputSpecs]]:
    """The contract's three signatures around ``model``: name → (function, input specs).
    ``scales``/``flip``: multi-scale inference (``export --scales … --flip``).

    ``metadata`` is :func:`model_metadata`'s dict, so the ``metadata`` signature answers what
    ``export.json`` and the TFLite sidecar say. The functions take their input by the name the
    signature gives it (``images``, ``jpeg``, ``output_size``, ``request``) and return a dict of
    outputs; the inputs with a Python default are optional (the SignatureDef records it)."""
    resize, class_names = metadata["resize"], metadata[contract.CLASS_NAMES]
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if len(class_names) > 255:  # uint8 class maps; 255 is VOC's "ignore" and never an output
        raise ValueError(f"at most 255 classes fit a uint8 class map, got {len(class_names)}")
    options = dict(
        input_size=tuple(metadata[contract.INPUT_SIZE]),
        output_stride=metadata[contract.OUTPUT_STRIDE],
        resize=resize,
        scales=tuple(scales),
        flip=flip,
    )

    def logits(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=False)

    # Python defaults become the SignatureDef's recorded defaults (optional inputs).
    output_size_default = tf.constant(DEFAULT_OUTPUT_SIZE, tf.int32)
    request_default = tf.constant(contract.INPUT_DEFAULTS[contract.METADATA_REQUEST], tf.int32)

    def serving_default(images, output_size=output_size_default):
        return segment_frames(logits, images, output_size=output_size, **options)

    def segment_jpeg(jpeg, output_size=output_size_default):
        return segment_frames(logits, decode_frames(jpeg), output_size=output_size, **options)

    def metadata_signature(request=request_default):
        rows = tf.shape(request)[:1]

        def batched(value, dtype):
            value = tf.constant(value, dtype)
            return tf.tile(value[None], tf.concat([rows, tf.ones_like(tf.shape(value))], 0))

        return {
            contract.CLASS_NAMES: batched(class_names, tf.string),
            contract.PALETTE: batched(metadata[contract.PALETTE], tf.uint8),
            contract.INPUT_SIZE: batched(metadata[contract.INPUT_SIZE], tf.int32),
            contract.OUTPUT_STRIDE: batched(metadata[contract.OUTPUT_STRIDE], tf.int32),
        }

    output_size = tf.TensorSpec([None, 2], tf.int32)
    return {
        contract.SEGMENT.name: (
            serving_default,
            (tf.TensorSpec([None, None, None, 3], tf.uint8), output_size),
        ),
        contract.SEGMENT_JPEG.name: (segment_jpeg, (tf.TensorSpec([None], tf.string), output_size)),
        contract.METADATA.name: (metadata_signature, (tf.TensorSpec([None], tf.int32),)),
    }


def save_serving_model(path: str | Path, functions: dict[str, tuple[Callable, InputSpecs]]) -> None:
    """Writes a SavedModel with ``functions`` as signatures, through Keras' ExportArchive.

    ExportArchive saves the variables the functions read, once each, directly on the saved
    object. (A plain ``tf.Module`` holding the Keras model gives a SavedModel that TensorFlow
    loads correctly but that the TFLite converter freezes without its weights: NaN outputs.
    ``archive.track(model)`` would save every weight a second time.)"""
    archive = keras.export.ExportArchive()  # tracks the variables the functions read
    for name, (function, specs) in functions.items():
        archive.add_endpoint(name, function, input_signature=list(specs))
    archive.write_out(str(path), verbose=False)


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage_version(
    run: RunFolder,
    config: TrainConfig,
    staging: Path,
    options: ExportOptions,
    *,
    version: int,
    warmup_sizes: tuple[tuple[int, int], ...] = DEFAULT_WARMUP_SIZES,
) -> VerificationReport:
    """Writes the SavedModel of ``run`` (whose configuration is ``config``), its warmup records
    and ``export.json`` into ``staging`` and verifies it there; raises ExportError when it
    fails (``staging`` is the caller's to remove).

    ``options.optimizations`` rewrite the served model for speed (:mod:`training.export.rewrites`);
    verification compares the export with the model as trained (in float16/bfloat16: with the
    rewritten model in that precision, and with the float32 model as trained for the
    precision's cost)."""
    precision, resize = options.precision, options.resize
    model = run.load_model(precision)
    served = optimize_for_inference(model, options.optimizations)
    inference = dict(scales=options.scales, flip=options.flip)  # multi-scale, or one pass
    metadata = model_metadata(config, resize)
    save_serving_model(staging, serving_functions(served, metadata, **inference))
    write_warmup_requests(staging, options.name, warmup_sizes, options.warmup_batches)
    # float32: the served graph against the model as trained. Reduced precision rounds the
    # folded weights differently from a batch norm, so the same-precision reference is the
    # rewritten model, and the float32 model as trained measures the cost.
    references = {precision: model if precision == "float32" else served}
    if precision != "float32":
        references["float32"] = run.load_model("float32")
    try:
        verification = verify_saved_model(
            staging,
            references,
            verification_frames(run, config),
            graph_options=dict(
                input_size=config.input_size,
                output_stride=config.output_stride,
                resize=resize,
                **inference,
            ),
            precision=precision,
            min_agreement=options.min_agreement,
            min_float32_agreement=options.min_float32_agreement,
        )
    except tf.errors.OpError as error:
        raise ExportError(
            f"the exported model failed to run during verification: {error.message}"
        ) from error
    if not verification.passed:
        raise ExportError(f"verification failed, nothing exported:\n{verification.text()}")
    info = {
        "model": options.name,
        "version": version,
        "run": str(run.path.resolve()),
        "precision": precision,
        "optimizations": options.optimizations.to_json(),
        "scales": list(options.scales),
        "flip": options.flip,
        "backbone": config.backbone,
        **model_metadata(config, resize),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "verification": verification.to_json(),
    }
    (staging / contract.EXPORT_INFO_PATH).write_text(json.dumps(info, indent=1) + "\n")
    return verification
