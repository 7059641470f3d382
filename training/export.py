"""Export a run as a TF Serving version: ``models/<name>/<N>/`` with the contract's signatures.

The version is built in a hidden folder beside the versions (``.export-N-…``: TF Serving only
loads integer names), reloaded and verified against the Keras model, given warmup records and
an ``export.json``, and only then renamed to ``N`` — one atomic step, so a polling server never
sees half a version, and a version that fails verification never lands.

Signatures (``../shared/DESIGN.md``):

- ``serving_default``: ``images`` uint8 [N,H,W,3] → ``class_map``, ``confidence`` uint8 [N,H,W]
- ``segment_jpeg``: ``jpeg`` string [N] (JPEG/PNG bytes) → the same, at the decoded size
- ``metadata``: ``request`` int32 [N], default ``[0]`` so it may be left out → ``class_names``
  string [N,C], ``palette`` uint8 [N,C,3], ``input_size`` int32 [N,2], ``output_stride``
  int32 [N]. Every output has a leading batch dimension (read row 0) because TF Serving's
  batching session batches *every* signature of a model: it rejects a request with no input
  tensor and splits each output along dimension 0.

    >>> report = export_run("runs/voc", "models", name="deeplabv3")
    >>> print(report.text())
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from client.palette import voc_colormap
from training.export_check import (
    DEFAULT_MIN_FLOAT32_AGREEMENT,
    VerificationReport,
    verification_frames,
    verify_saved_model,
)
from training.fast_inference import (
    DEFAULT_OPTIMIZATIONS,
    InferenceOptimizations,
    optimize_for_inference,
)
from training.inference_graph import RESIZE_MODES, decode_frames, segment_frames
from training.run import RunFolder, TrainConfig
from training.warmup import DEFAULT_WARMUP_BATCHES, DEFAULT_WARMUP_SIZES, write_warmup_requests

# --precision → the Keras dtype policy the model computes in (weights stay float32).
PRECISIONS = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
EXPORT_INFO = Path("assets.extra") / "export.json"


class ExportError(RuntimeError):
    """The export could not land (bad version, failed verification); nothing was written."""


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under Keras dtype policy ``name``, restoring the previous one after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def model_metadata(config: TrainConfig, resize: str) -> dict:
    """What a client needs besides the class map: the ``metadata`` signature's values, also
    written to ``export.json`` and the TFLite sidecar."""
    return {
        "class_names": list(config.class_names),
        "palette": voc_colormap()[: len(config.class_names)].tolist(),
        "input_size": list(config.input_size),
        "output_stride": config.output_stride,
        "resize": resize,
    }


def load_run_model(run: RunFolder, precision: str = "float32") -> keras.Model:
    """The run's best weights in a model that computes in ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    with dtype_policy(PRECISIONS[precision]):
        return run.load_model()


def serving_functions(
    model: keras.Model, metadata: dict
) -> dict[str, tuple[Callable, tf.TensorSpec]]:
    """The contract's three signatures around ``model``: name → (function, input spec).

    ``metadata`` is :func:`model_metadata`'s dict, so the ``metadata`` signature answers what
    ``export.json`` and the TFLite sidecar say. The functions take their input by the name the
    signature gives it (``images``, ``jpeg``, ``request``) and return a dict of outputs."""
    resize, class_names = metadata["resize"], metadata["class_names"]
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if len(class_names) > 255:  # uint8 class maps; 255 is VOC's "ignore" and never an output
        raise ValueError(f"at most 255 classes fit a uint8 class map, got {len(class_names)}")
    options = dict(
        input_size=tuple(metadata["input_size"]),
        output_stride=metadata["output_stride"],
        resize=resize,
    )

    def logits(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=False)

    def serving_default(images):
        return segment_frames(logits, images, **options)

    def segment_jpeg(jpeg):
        return segment_frames(logits, decode_frames(jpeg), **options)

    def metadata_signature(request=tf.constant([0], tf.int32)):  # noqa: B008 (its default)
        rows = tf.shape(request)[:1]

        def batched(value, dtype):
            value = tf.constant(value, dtype)
            return tf.tile(value[None], tf.concat([rows, tf.ones_like(tf.shape(value))], 0))

        return {
            "class_names": batched(class_names, tf.string),
            "palette": batched(metadata["palette"], tf.uint8),
            "input_size": batched(metadata["input_size"], tf.int32),
            "output_stride": batched(metadata["output_stride"], tf.int32),
        }

    return {
        "serving_default": (serving_default, tf.TensorSpec([None, None, None, 3], tf.uint8)),
        "segment_jpeg": (segment_jpeg, tf.TensorSpec([None], tf.string)),
        "metadata": (metadata_signature, tf.TensorSpec([None], tf.int32)),
    }


def save_serving_model(
    path: str | Path, functions: dict[str, tuple[Callable, tf.TensorSpec]]
) -> None:
    """Writes a SavedModel with ``functions`` as signatures, through Keras' ExportArchive.

    ExportArchive saves the variables the functions read, once each, directly on the saved
    object. (A plain ``tf.Module`` holding the Keras model gives a SavedModel that TensorFlow
    loads correctly but that the TFLite converter freezes without its weights: NaN outputs.
    ``archive.track(model)`` would save every weight a second time.)"""
    archive = keras.export.ExportArchive()  # tracks the variables the functions read
    for name, (function, spec) in functions.items():
        archive.add_endpoint(name, function, input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def existing_versions(model_dir: str | Path) -> list[int]:
    """Integer version folders under ``models/<name>/``, ascending (as TF Serving sees them)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _number_in(name: str) -> int | None:
    """The version number a folder name holds or reserves: ``3``, a staging ``.export-3-…``,
    or a rolled-back ``3.rolled-back`` / ``3-bad`` (numbers are never reused)."""
    match = re.fullmatch(r"\.export-(\d+)-.*", name) or re.match(r"(\d+)(?!\d)", name)
    return int(match.group(1)) if match else None


def next_version(model_dir: str | Path) -> int:
    """One above every number in use, including staging and rolled-back folders, so a
    number never names two different models (in logs, metrics, caches)."""
    model_dir = Path(model_dir)
    names = [p.name for p in model_dir.iterdir()] if model_dir.is_dir() else []
    used = [n for n in map(_number_in, names) if n is not None]
    return max(used, default=0) + 1


@dataclass
class ExportReport:
    path: Path
    version: int
    precision: str
    resize: str
    size_bytes: int
    seconds: float
    verification: VerificationReport

    def text(self) -> str:
        head = (
            f"exported {self.path} (version {self.version}, {self.precision}, resize "
            f"{self.resize}, {self.size_bytes / 1e6:.1f} MB on disk) in {self.seconds:.1f} s"
        )
        return f"{head}\n{self.verification.text()}"


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def export_run(
    run_dir: str | Path,
    models_dir: str | Path,
    *,
    name: str = "deeplabv3",
    version: int | None = None,
    precision: str = "float32",
    resize: str = "aspect",
    min_agreement: float = 0.999,
    min_float32_agreement: float = DEFAULT_MIN_FLOAT32_AGREEMENT,
    warmup_sizes: tuple[tuple[int, int], ...] = DEFAULT_WARMUP_SIZES,
    warmup_batches: tuple[int, ...] = DEFAULT_WARMUP_BATCHES,
    optimizations: InferenceOptimizations = DEFAULT_OPTIMIZATIONS,
) -> ExportReport:
    """Exports, verifies and atomically publishes ``<models_dir>/<name>/<version>/``.

    ``optimizations`` rewrite the served model for speed (native atrous convolutions, batch
    norms folded: :mod:`training.fast_inference`); verification compares the export with the
    model as trained (in float16/bfloat16: with the rewritten model in that precision, and
    with the float32 model as trained for the precision's cost)."""
    started = time.perf_counter()
    run = RunFolder(run_dir)
    config = run.read_config()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    model_dir = Path(models_dir) / name
    version = next_version(model_dir) if version is None else version
    if version < 1:
        raise ExportError(f"--version must be a positive integer, got {version}")
    target = model_dir / str(version)
    if target.exists():
        raise ExportError(
            f"{target} exists: versions are never overwritten (pick another --version, or "
            f"remove that folder to replace it)"
        )
    model = load_run_model(run, precision)
    served = optimize_for_inference(model, optimizations)
    functions = serving_functions(served, model_metadata(config, resize))
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".export-{version}-{uuid.uuid4().hex[:8]}"
    try:
        save_serving_model(staging, functions)
        write_warmup_requests(staging, name, warmup_sizes, warmup_batches)
        # float32: the served graph against the model as trained. Reduced precision rounds
        # the folded weights differently from a batch norm, so the same-precision reference
        # is the rewritten model, and the float32 model as trained measures the cost.
        references = {precision: model if precision == "float32" else served}
        if precision != "float32":
            references["float32"] = load_run_model(run, "float32")
        try:
            verification = verify_saved_model(
                staging,
                references,
                verification_frames(run, config),
                graph_options=dict(
                    input_size=config.input_size, output_stride=config.output_stride, resize=resize
                ),
                precision=precision,
                min_agreement=min_agreement,
                min_float32_agreement=min_float32_agreement,
            )
        except tf.errors.OpError as error:
            raise ExportError(
                f"the exported model failed to run during verification: {error.message}"
            ) from error
        if not verification.passed:
            raise ExportError(f"verification failed, nothing exported:\n{verification.text()}")
        info = {
            "model": name,
            "version": version,
            "run": str(run.path.resolve()),
            "precision": precision,
            "optimizations": optimizations.to_json(),
            "backbone": config.backbone,
            **model_metadata(config, resize),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "verification": verification.to_json(),
        }
        (staging / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n")
        try:
            os.rename(staging, target)  # atomic; fails if another export took the number
        except OSError as error:
            raise ExportError(f"could not publish {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(
        path=target,
        version=version,
        precision=precision,
        resize=resize,
        size_bytes=_folder_size(target),
        seconds=time.perf_counter() - started,
        verification=verification,
    )


def read_export_info(version_dir: str | Path) -> dict:
    """The ``export.json`` of a published version (run, options, verification figures)."""
    return json.loads((Path(version_dir) / EXPORT_INFO).read_text())
