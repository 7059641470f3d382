"""What every onboard export (TFLite in any precision, ONNX) shares: the output path check, the
verification against the float32 model, and the JSON sidecar beside the model.

An onboard runner (the vehicle's, without TensorFlow) reads only the sidecar and the model:

    sidecar = read_sidecar("deeplabv3.tflite")       # deeplabv3.json
    if sidecar["resize_in"] == "runner":             # int8: the model runs at one fixed size
        h, w = sidecar["network_size"]
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        class_map = cv2.resize(run(small[None])["class_map"][0], (W, H), cv2.INTER_NEAREST)
    else:                                            # the model resizes: any frame size
        class_map = run(rgb[None])["class_map"][0]

:func:`runner_resize` is that runner-side resize, so verification measures what the vehicle
runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from client.contract import CLASS_MAP, CONFIDENCE, IMAGES, OUTPUT_SIZE, SEGMENT
from training.config import TrainConfig
from training.export.saved_model import model_metadata
from training.export.verify import Checker, VerificationReport, verification_frames
from training.learning.run_folder import RunFolder

SIDECAR_FORMAT = 1
"""Version of the sidecar's layout; a runner refuses a number it does not know."""
RESIZE_IN = ("model", "runner")
"""Where the frame is resized to the network size and the class map back to the frame size."""


def check_output_path(out: str | Path, suffix: str) -> Path:
    """``out`` as a Path, refused before any work when its name or folder cannot take a model."""
    out = Path(out)
    if out.suffix != suffix:
        raise ValueError(f"--out {out}: expected a file name ending in {suffix}")
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {folder} is not a writable folder")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder")
    return out


@dataclass
class OnboardExportReport:
    """What ``export-tflite`` and ``export-onnx`` wrote and how it verified (the CLI prints
    ``text()``)."""

    path: Path
    size_bytes: int
    seconds: float
    verification: VerificationReport

    def text(self) -> str:
        head = (
            f"exported {self.path} ({self.size_bytes / 1e6:.1f} MB) and "
            f"{sidecar_path(self.path).name} in {self.seconds:.1f} s"
        )
        return f"{head}\n{self.verification.text()}"


def sidecar_path(model_path: str | Path) -> Path:
    """``deeplabv3.tflite`` → ``deeplabv3.json`` (also for ``.onnx``)."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path) -> dict:
    return json.loads(sidecar_path(model_path).read_text())


def runner_resize(
    model: Callable[[np.ndarray], dict], network_size: tuple[int, int]
) -> Callable[[np.ndarray], dict]:
    """Frames of any size through a model fixed at ``network_size`` (height, width), as the
    onboard runner does: each frame resized bilinearly (as ``tf.image.resize``), the outputs
    back to the frame size by nearest neighbour (uint8 class ids cannot be interpolated)."""
    height, width = network_size

    def segment(frames: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, list] = {CLASS_MAP: [], CONFIDENCE: []}
        for frame in frames:
            small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
            answer = model(small[None])
            for name in outputs:
                outputs[name].append(
                    cv2.resize(
                        np.asarray(answer[name])[0],
                        (frame.shape[1], frame.shape[0]),
                        interpolation=cv2.INTER_NEAREST,
                    )
                )
        return {name: np.stack(maps) for name, maps in outputs.items()}

    return segment


def verify_onboard(
    run: RunFolder,
    config: TrainConfig,
    segment: Callable[[np.ndarray], dict],
    *,
    reference: keras.Model,
    resize: str,
    min_agreement: float,
    model_text: str,
    notes: list[str] | None = None,
    fixed_size: tuple[int, int] | None = None,
    segment_sized: Callable[[np.ndarray, np.ndarray], dict] | None = None,
) -> VerificationReport:
    """``segment`` (uint8 frames [N,H,W,3] → outputs at the frame size) against the float32
    Keras model as trained (``reference``), on the run's validation frames and the synthetic
    sizes; the one check every onboard format passes before it is written. A model of
    ``fixed_size`` (height, width) is checked on frames of its orientation only: the runner
    stretches the others. ``segment_sized(frames, output_size)``, for a model that takes an
    ``output_size``, is checked at a planner's size too."""
    graph_options = dict(
        input_size=config.input_size, output_stride=config.output_stride, resize=resize
    )
    checker = Checker({"float32": reference}, graph_options=graph_options, precision="float32")
    frames = verification_frames(run, config)
    notes = list(notes or [])
    if fixed_size is not None:
        kept = [f for f in frames if _landscape(f.pixels.shape) == _landscape(fixed_size)]
        if len(kept) < len(frames):
            notes.append(f"{len(frames) - len(kept)} frame(s) of the other orientation left out")
        frames = kept
    checker.raw_frames(frames, segment)
    if segment_sized is not None:
        checker.sized_frame(frames, segment_sized)
    return checker.report(
        min_agreement=min_agreement,
        frames=frames,
        signatures=[(SEGMENT.name, f"{IMAGES} {model_text}", f"{CLASS_MAP}, {CONFIDENCE}")],
        metadata="in the sidecar",
        notes=notes,
    )


def _landscape(shape) -> bool:
    return shape[1] >= shape[0]


def sidecar(
    out: Path,
    run: RunFolder,
    config: TrainConfig,
    *,
    resize: str,
    runtime: str,
    optimize: str,
    input_shape: list[int | None],
    resize_in: str,
    quantization: dict | None,
    verification: VerificationReport,
) -> dict:
    """The JSON an onboard runner needs besides the model: tensors, sizes, classes, where the
    resize happens, quantization, and the verification figures."""
    if resize_in not in RESIZE_IN:
        raise ValueError(f"resize_in must be one of {RESIZE_IN}, got {resize_in!r}")
    output_shape = input_shape[:3]
    return {
        "format": SIDECAR_FORMAT,
        "model": out.name,
        "runtime": runtime,
        "run": str(run.path.resolve()),
        "signature": SEGMENT.name,
        "inputs": {
            IMAGES: {"dtype": "uint8", "shape": input_shape, "layout": "NHWC RGB"},
            # A model that resizes in its graph takes the maps' size (int8's runner resizes).
            **(
                {OUTPUT_SIZE: {"dtype": "int32", "shape": [1, 2], "frame_size": [0, 0]}}
                if resize_in == "model"
                else {}
            ),
        },
        "outputs": {
            name: {"dtype": "uint8", "shape": output_shape} for name in (CLASS_MAP, CONFIDENCE)
        },
        "resize_in": resize_in,
        "network_size": input_shape[1:3] if resize_in == "runner" else None,
        "optimize": optimize,
        "quantization": quantization,
        "backbone": config.backbone,
        **model_metadata(config, resize),
        "verification": verification.to_json(),
    }


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


def write_model(
    out: Path, model: bytes, info: dict, started: float, verification: VerificationReport
) -> OnboardExportReport:
    """The model, then its sidecar, each replaced atomically; the report of an export that
    began at ``started`` (``time.perf_counter()``)."""
    _write_atomically(out, model)
    _write_atomically(sidecar_path(out), (json.dumps(info, indent=1) + "\n").encode())
    return OnboardExportReport(
        path=out,
        size_bytes=len(model),
        seconds=time.perf_counter() - started,
        verification=verification,
    )
