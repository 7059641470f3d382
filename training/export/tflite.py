"""TFLite export for onboard computers that run the model themselves (no model server).

The ``serving_default`` graph of the SavedModel export — resize in the graph, class map and
confidence out at the frame's own size — converted with the TFLite converter, verified the
same way against the Keras model, written with a JSON sidecar for what the ``metadata``
signature gives a server's clients.

What differs from the SavedModel contract (TFLite allows no more):

- one signature, ``serving_default`` (``images`` uint8 [N,H,W,3] → ``class_map``,
  ``confidence`` uint8 [N,H,W]); the signature runner resizes the interpreter to each frame
  size (a size change costs a re-allocation, so keep one camera size);
- no ``segment_jpeg``: TFLite has no image-decoding op; decode with OpenCV on the vehicle
  (and convert its BGR to RGB);
- no ``metadata`` signature: ``<name>.json`` beside the model holds class names, palette,
  input size, output stride and resize mode;
- ``--optimize float16`` stores weights as float16 (half the file; computed in float32 on
  CPUs, in float16 by GPU delegates).

On the vehicle (``pip install ai-edge-litert``, the TFLite runtime without TensorFlow)::

    from ai_edge_litert.interpreter import Interpreter
    segment = Interpreter("deeplabv3.tflite").get_signature_runner()
    rgb_frame = cv2.cvtColor(camera_frame, cv2.COLOR_BGR2RGB)
    class_map = segment(images=rgb_frame[None])["class_map"][0]
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from client.contract import CLASS_MAP, CONFIDENCE, IMAGES, SEGMENT
from training.config import TFLITE_OPTIMIZATIONS, TfliteOptions, default_of
from training.export.saved_model import (
    model_metadata,
    save_serving_model,
    serving_functions,
)
from training.export.verify import Checker, VerificationReport, verification_frames
from training.learning.run_folder import RunFolder


@dataclass
class TfliteReport:
    path: Path
    size_bytes: int
    seconds: float
    verification: VerificationReport

    def text(self) -> str:
        head = (
            f"exported {self.path} ({self.size_bytes / 1e6:.1f} MB) and "
            f"{self.path.with_suffix('.json').name} in {self.seconds:.1f} s"
        )
        return f"{head}\n{self.verification.text()}"


def convert_saved_model(
    saved_model_dir: str | Path, optimize: str = default_of(TfliteOptions, "optimize")
) -> bytes:
    """The ``serving_default`` signature of a SavedModel as a TFLite flatbuffer."""
    if optimize not in TFLITE_OPTIMIZATIONS:
        raise ValueError(f"optimize must be one of {TFLITE_OPTIMIZATIONS}, got {optimize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SEGMENT.name]
    )
    if optimize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as error:  # the converter raises its own ConverterError and others
        raise RuntimeError(f"TFLite conversion of {saved_model_dir} failed: {error}") from error


def tflite_runner(model: bytes, num_threads: int | None = None):
    """A signature runner for ``serving_default`` (TensorFlow's bundled interpreter)."""
    with warnings.catch_warnings():
        # TF warns that tf.lite.Interpreter moves to ai_edge_litert; same runtime, same API.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_content=model, num_threads=num_threads)
    return interpreter.get_signature_runner(SEGMENT.name), interpreter


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        try:
            f.write(data)
        except BaseException:
            os.unlink(f.name)
            raise
    os.chmod(f.name, 0o644)  # NamedTemporaryFile creates 0600; a model file is for sharing
    os.replace(f.name, path)


def export_tflite(
    run_dir: str | Path, out: str | Path, options: TfliteOptions | None = None, **changes
) -> TfliteReport:
    """Writes ``out`` (.tflite) and its ``.json`` sidecar once the model passes verification.

    ``options`` (default :class:`~training.config.TfliteOptions`) with ``changes`` to any of
    its fields applied (``export_tflite(run, out, optimize="float16")``)."""
    started = time.perf_counter()
    options = dataclasses.replace(options or TfliteOptions(), **changes)
    resize, optimize = options.resize, options.optimize
    out = Path(out)
    if out.suffix != ".tflite":
        raise ValueError(f"--out {out}: expected a file name ending in .tflite")
    run = RunFolder(run_dir)
    config = run.read_config()
    model = run.load_model()
    graph_options = dict(
        input_size=config.input_size, output_stride=config.output_stride, resize=resize
    )
    functions = serving_functions(model, model_metadata(config, resize))
    with tempfile.TemporaryDirectory(prefix="tflite-export-") as staging:
        save_serving_model(staging, {SEGMENT.name: functions[SEGMENT.name]})
        flatbuffer = convert_saved_model(staging, optimize)

    segment, interpreter = tflite_runner(flatbuffer)
    # Also with --optimize float16 the reference is the float32 model: TFLite folds batch norms
    # into the convolutions before rounding weights, so no Keras model has the same weights.
    checker = Checker({"float32": model}, graph_options=graph_options, precision="float32")
    frames = verification_frames(run, config)
    checker.raw_frames(frames, lambda pixels: segment(**{IMAGES: pixels}))
    signature = interpreter.get_signature_list()[SEGMENT.name]
    verification = checker.report(
        min_agreement=options.min_agreement,
        frames=frames,
        signatures=[
            (
                SEGMENT.name,
                ", ".join(signature["inputs"]) + " uint8 [?,?,?,3]",
                ", ".join(sorted(signature["outputs"])) + " uint8 [?,?,?]",
            )
        ],
        metadata=f"in {out.with_suffix('.json').name}",
        notes=["weights stored as float16"] if optimize == "float16" else [],
    )
    if not verification.passed:
        raise RuntimeError(f"TFLite verification failed, nothing written:\n{verification.text()}")

    sidecar = {
        "model": out.name,
        "run": str(run.path.resolve()),
        "signature": SEGMENT.name,
        "inputs": {IMAGES: "uint8 [N,H,W,3] RGB"},
        "outputs": {CLASS_MAP: "uint8 [N,H,W]", CONFIDENCE: "uint8 [N,H,W]"},
        **model_metadata(config, resize),
        "optimize": optimize,
        "verification": verification.to_json(),
    }
    _write_atomically(out, flatbuffer)
    _write_atomically(out.with_suffix(".json"), (json.dumps(sidecar, indent=1) + "\n").encode())
    return TfliteReport(
        path=out,
        size_bytes=len(flatbuffer),
        seconds=time.perf_counter() - started,
        verification=verification,
    )


def read_sidecar(model_path: str | Path) -> dict:
    return json.loads(Path(model_path).with_suffix(".json").read_text())
