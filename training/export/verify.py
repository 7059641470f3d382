"""Verification of an exported SavedModel against the Keras model it came from.

The SavedModel is reloaded from disk and run on real frames (from the run's data) and
synthetic ones of several sizes (odd, landscape, portrait, a batch of two, JPEG and PNG bytes,
a frame whose maps are asked for at a quarter of its size).
The reference is the same inference graph run on the in-memory Keras model at the same
precision. The report gives the share of equal class-map pixels, the largest confidence
difference, the network size and the latency of each call, and for reduced precision also the
agreement with the float32 model. It fails below ``min_agreement`` overall, below ten times
that slack in any single check (a small frame is a tiny share of all pixels), or, for reduced
precision, below ``min_float32_agreement`` against the float32 model.

    report = verify_saved_model(path, {"float32": model}, frames, graph_options=opts)
    report.passed, f"{report.agreement:.4%}"
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from client import contract
from client.contract import CLASS_MAP, CONFIDENCE
from training.config import DEFAULT_MIN_AGREEMENT, ExportOptions, TrainConfig, default_of
from training.data import voc
from training.data.layouts import open_layout
from training.data.synth import synthetic_frame
from training.export.warmup import encode_rgb
from training.learning.run_folder import RunFolder
from training.model.inference_graph import DEFAULT_OUTPUT_SIZE, network_size, segment_frames

# (height, width) of synthetic frames: odd and tiny, VGA landscape, VGA portrait.
SYNTHETIC_SIZES = ((37, 53), (480, 640), (640, 480))
# The ``output_size`` check: a 480×640 frame's maps at a planner's 120×160.
PLANNER_SIZE = (120, 160)
TIMED_CALLS = 3
# A check alone may miss ten times what all together may (0.999 overall → 0.99 per check).
ROW_SLACK = 10
# Reduced precision must also agree with the float32 model this well, or it changed answers.
DEFAULT_MIN_FLOAT32_AGREEMENT = default_of(ExportOptions, "min_float32_agreement")


@dataclass
class Frame:
    name: str
    pixels: np.ndarray  # uint8 RGB [H,W,3]


def _synthetic(height: int, width: int, seed: int) -> Frame:
    return Frame(f"synthetic {height}x{width}", synthetic_frame(height, width, seed))


def real_frames(
    run: RunFolder,
    config: TrainConfig,
    count: int = 2,
    lists: tuple[str, ...] | None = None,
) -> list[Frame]:
    """The first ``count`` images of the run's split ``lists`` (in that order; default: its
    validation, then its training split) that exist on this machine."""
    if lists is None:
        lists = (f"{config.val_split}.txt", f"{config.train_split}.txt")
    frames = []
    layout = open_layout(config.data)  # VOC's, a CVAT export's or Cityscapes' files
    for list_name in lists:
        path = run.splits / list_name
        ids = voc.read_split_list(path) if path.is_file() else []
        for sample_id in ids:
            try:
                image_file = layout.image_path(sample_id)
            except (KeyError, ValueError, OSError):  # an id this root does not have
                continue
            image = cv2.imread(str(image_file), cv2.IMREAD_COLOR)
            if image is not None:
                frames.append(Frame(sample_id, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
            if len(frames) == count:
                return frames
    return frames


def verification_frames(run: RunFolder, config: TrainConfig) -> list[Frame]:
    """Real frames from the run's data (when present) and the synthetic sizes above."""
    synthetic = [_synthetic(h, w, seed) for seed, (h, w) in enumerate(SYNTHETIC_SIZES)]
    return real_frames(run, config) + synthetic


@dataclass
class CheckRow:
    check: str
    input: str
    network: str
    equal_pixels: int
    pixels: int
    max_confidence_diff: int
    latency_ms: float

    @property
    def agreement(self) -> float:
        return self.equal_pixels / self.pixels


@dataclass
class VerificationReport:
    precision: str
    min_agreement: float
    rows: list[CheckRow]
    signatures: list[tuple[str, str, str]]
    metadata: str
    float32_agreement: float | None = None
    min_float32_agreement: float = DEFAULT_MIN_FLOAT32_AGREEMENT
    notes: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return sum(r.equal_pixels for r in self.rows) / sum(r.pixels for r in self.rows)

    @property
    def row_floor(self) -> float:
        """Each check alone must reach this (a small frame is a tiny share of the pixels)."""
        return 1 - ROW_SLACK * (1 - self.min_agreement)

    def failures(self) -> list[str]:
        """Why verification fails; empty when it passes."""
        reasons = []
        if self.agreement < self.min_agreement:
            reasons.append(f"{self.agreement:.4%} equal pixels < {self.min_agreement:.2%}")
        reasons += [
            f"{row.check}: {row.agreement:.3%} equal pixels < {self.row_floor:.2%}"
            for row in self.rows
            if row.agreement < self.row_floor
        ]
        if (
            self.float32_agreement is not None
            and self.float32_agreement < self.min_float32_agreement
        ):
            reasons.append(
                f"agreement with the float32 model {self.float32_agreement:.3%} < "
                f"{self.min_float32_agreement:.2%}: {self.precision} changes the answers"
            )
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def text(self) -> str:
        lines = [f"{'signature':<16} {'inputs':<26} outputs"]
        lines += [f"{name:<16} {inputs:<26} {outputs}" for name, inputs, outputs in self.signatures]
        lines += [f"metadata: {self.metadata}", ""]
        lines.append(
            f"verification against the Keras model ({self.precision}; "
            f"fails below {self.min_agreement:.2%} equal pixels):"
        )
        lines.append(
            f"{'check':<22} {'input':<22} {'network':<9} {'equal px':>9} {'conf Δ':>6} "
            f"{'latency':>9}"
        )
        for r in self.rows:
            lines.append(
                f"{r.check:<22} {r.input:<22} {r.network:<9} {r.agreement:>9.3%} "
                f"{r.max_confidence_diff:>6} {r.latency_ms:>6.0f} ms"
            )
        pixels = sum(r.pixels for r in self.rows)
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.failures())
        lines.append(f"all checks: {self.agreement:.4%} of {pixels:,} pixels equal: {verdict}")
        if self.float32_agreement is not None:
            lines.append(
                f"agreement with the float32 model (cost of {self.precision}): "
                f"{self.float32_agreement:.4%}"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "agreement": self.agreement,
            "min_agreement": self.min_agreement,
            "float32_agreement": self.float32_agreement,
            "min_float32_agreement": self.min_float32_agreement,
            "failures": self.failures(),
            "checks": [asdict(row) for row in self.rows],
            "notes": self.notes,
        }


def _spec_text(spec) -> str:
    dims = ",".join("?" if d is None else str(d) for d in spec.shape.as_list())
    return f"{spec.dtype.name} [{dims}]"


def signature_table(loaded) -> list[tuple[str, str, str]]:
    """(name, inputs, outputs) of each signature of a loaded SavedModel, for the report."""
    rows = []
    for name, function in sorted(loaded.signatures.items()):
        inputs = function.structured_input_signature[1]
        outputs = function.structured_outputs
        rows.append(
            (
                name,
                ", ".join(f"{k} {_spec_text(v)}" for k, v in sorted(inputs.items())),
                ", ".join(f"{k} {_spec_text(v)}" for k, v in sorted(outputs.items())),
            )
        )
    return rows


def _timed(function: Callable[[], dict], calls: int = TIMED_CALLS) -> tuple[dict, float]:
    """Outputs of ``function`` and its median latency (ms) over ``calls`` after one warm call."""
    outputs = function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return outputs, statistics.median(times) if times else float("nan")


class Checker:
    """Runs checks of an exported model against Keras references and collects the rows.

    ``references`` maps precision names to Keras models: ``references[precision]`` is what the
    export must agree with; a ``"float32"`` entry besides it also measures the float32
    agreement of a reduced-precision export."""

    def __init__(self, references: dict[str, keras.Model], *, graph_options: dict, precision: str):
        self.references = references
        self.graph_options = graph_options
        self.precision = precision
        self.rows: list[CheckRow] = []
        self.float32_equal = 0
        self._functions: dict[int, Callable] = {}

    def expected(
        self,
        model: keras.Model,
        pixels: np.ndarray,
        output_size: tuple[tuple[int, int], ...] = DEFAULT_OUTPUT_SIZE,
    ) -> dict[str, np.ndarray]:
        """The reference outputs: the in-memory model through the same inference graph, in a
        tf.function like the export (eager execution would round differently at bfloat16)."""
        if id(model) not in self._functions:
            self._functions[id(model)] = tf.function(
                lambda frames, size: segment_frames(
                    lambda x: model(x, training=False),
                    frames,
                    output_size=size,
                    **self.graph_options,
                ),
                input_signature=[
                    tf.TensorSpec([None, None, None, 3], tf.uint8),
                    tf.TensorSpec([None, 2], tf.int32),
                ],
            )
        function = self._functions[id(model)]
        return {k: v.numpy() for k, v in function(pixels, np.int32(output_size)).items()}

    def check(
        self,
        name: str,
        text: str,
        pixels: np.ndarray,
        call: Callable[[], dict],
        output_size: tuple[int, int] | None = None,
    ) -> None:
        """``call()`` must return the export's outputs for the uint8 frames ``pixels`` (at
        ``output_size`` when given, else at the frames' size)."""
        outputs, latency = _timed(lambda: {k: np.asarray(v) for k, v in call().items()})
        wanted = pixels.shape[:3] if output_size is None else (len(pixels), *output_size)
        if outputs[CLASS_MAP].shape != wanted:
            raise RuntimeError(
                f"{name}: class_map shape {outputs[CLASS_MAP].shape}, expected {wanted}"
            )
        sizes = DEFAULT_OUTPUT_SIZE if output_size is None else (output_size,)
        reference = self.expected(self.references[self.precision], pixels, sizes)
        sizing = {k: self.graph_options[k] for k in ("input_size", "output_stride", "resize")}
        size = network_size(tf.shape(pixels)[1:3], **sizing).numpy()
        confidence_diff = np.abs(
            outputs[CONFIDENCE].astype(int) - reference[CONFIDENCE].astype(int)
        )
        self.rows.append(
            CheckRow(
                check=name,
                input=text,
                network=f"{size[0]}x{size[1]}",
                equal_pixels=int((outputs[CLASS_MAP] == reference[CLASS_MAP]).sum()),
                pixels=int(outputs[CLASS_MAP].size),
                max_confidence_diff=int(confidence_diff.max()),
                latency_ms=latency,
            )
        )
        if self.measures_float32_cost:
            full = self.expected(self.references["float32"], pixels, sizes)
            self.float32_equal += int((outputs[CLASS_MAP] == full[CLASS_MAP]).sum())

    @property
    def measures_float32_cost(self) -> bool:
        return self.precision != "float32" and "float32" in self.references

    def raw_frames(self, frames: list[Frame], segment: Callable[[np.ndarray], dict]) -> None:
        """Each frame alone, then two different 480×640 frames in one batch."""
        for frame in frames:
            pixels = frame.pixels[None]
            h, w = frame.pixels.shape[:2]
            self.check(frame.name, f"1x{h}x{w} raw", pixels, lambda p=pixels: segment(p))
        landscape = [f.pixels for f in frames if f.pixels.shape[:2] == (480, 640)]
        if landscape:
            pair = np.stack([landscape[0], landscape[0][:, ::-1]])
            self.check("batch of two", "2x480x640 raw", pair, lambda: segment(pair))

    def sized_frame(
        self, frames: list[Frame], segment: Callable[[np.ndarray, np.ndarray], dict]
    ) -> None:
        """A 480×640 frame with ``output_size`` :data:`PLANNER_SIZE`: ``segment(pixels,
        output_size)`` must give the reference graph's maps at that size."""
        landscape = [f.pixels for f in frames if f.pixels.shape[:2] == (480, 640)]
        if landscape:
            pixels, size = landscape[0][None], np.int32([PLANNER_SIZE])
            text = f"1x480x640 raw, {contract.OUTPUT_SIZE} {PLANNER_SIZE[0]}x{PLANNER_SIZE[1]}"
            self.check(
                contract.OUTPUT_SIZE, text, pixels, lambda: segment(pixels, size), PLANNER_SIZE
            )

    def encoded_frames(self, frames: list[Frame], segment: Callable[[bytes], dict]) -> None:
        """A 480×640 frame as JPEG (compared on the graph's own decoding) and the smallest
        frame as PNG (lossless: compared on its pixels)."""
        landscape = [f.pixels for f in frames if f.pixels.shape[:2] == (480, 640)]
        if landscape:
            jpeg = encode_rgb(landscape[0], ".jpg")
            decoded = tf.io.decode_image(jpeg, channels=3).numpy()[None]
            self.check("segment_jpeg JPEG", "1 JPEG 480x640", decoded, lambda: segment(jpeg))
        odd = min(frames, key=lambda f: f.pixels.size).pixels
        png = encode_rgb(odd, ".png")
        text = f"1 PNG {odd.shape[0]}x{odd.shape[1]}"
        self.check("segment_jpeg PNG", text, odd[None], lambda: segment(png))

    def report(
        self,
        *,
        min_agreement: float,
        frames: list[Frame],
        min_float32_agreement: float = DEFAULT_MIN_FLOAT32_AGREEMENT,
        **fields,
    ) -> VerificationReport:
        notes = fields.pop("notes", [])
        if all(f.name.startswith("synthetic") for f in frames):
            notes.append("no real frames: the run's data folder is not on this machine")
        pixels = sum(r.pixels for r in self.rows)
        return VerificationReport(
            precision=self.precision,
            min_agreement=min_agreement,
            rows=self.rows,
            float32_agreement=self.float32_equal / pixels if self.measures_float32_cost else None,
            min_float32_agreement=min_float32_agreement,
            notes=notes,
            **fields,
        )


def verify_saved_model(
    path: str | Path,
    references: dict[str, keras.Model],
    frames: list[Frame],
    *,
    graph_options: dict,
    precision: str = "float32",
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_float32_agreement: float = DEFAULT_MIN_FLOAT32_AGREEMENT,
) -> VerificationReport:
    """Reloads the SavedModel at ``path`` and checks its signatures against the references."""
    loaded = tf.saved_model.load(str(path))
    serving = loaded.signatures[contract.SEGMENT.name]
    segment_jpeg = loaded.signatures[contract.SEGMENT_JPEG.name]
    checker = Checker(references, graph_options=graph_options, precision=precision)
    # Python's signature functions have no input defaults (TF Serving and ours fill them).
    default = np.int32(DEFAULT_OUTPUT_SIZE)
    checker.raw_frames(
        frames, lambda pixels: serving(**{contract.IMAGES: pixels, contract.OUTPUT_SIZE: default})
    )
    checker.sized_frame(
        frames,
        lambda pixels, size: serving(**{contract.IMAGES: pixels, contract.OUTPUT_SIZE: size}),
    )
    checker.encoded_frames(
        frames,
        lambda data: segment_jpeg(**{contract.JPEG: [data], contract.OUTPUT_SIZE: default}),
    )
    metadata_call = loaded.signatures[contract.METADATA.name]
    metadata = {k: v.numpy() for k, v in metadata_call(**{contract.METADATA_REQUEST: [0]}).items()}
    names = [n.decode() for n in metadata[contract.CLASS_NAMES][0]]
    return checker.report(
        min_agreement=min_agreement,
        min_float32_agreement=min_float32_agreement,
        frames=frames,
        signatures=signature_table(loaded),
        metadata=(
            f"{len(names)} classes ({', '.join(names[:4])}…), input size "
            f"{metadata[contract.INPUT_SIZE][0].tolist()}, "
            f"output stride {metadata[contract.OUTPUT_STRIDE][0]}"
        ),
    )
