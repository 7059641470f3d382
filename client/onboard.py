"""The exported model run on the vehicle itself, with the remote client's interface.

When there is no server (or no link to it), the vehicle runs the TFLite export
(``python -m training export-tflite``) through LiteRT, TensorFlow Lite's runtime without
TensorFlow (XNNPACK on the CPU), or the ONNX export (``export-onnx``) through ONNX Runtime.
Both take uint8 RGB frames of any size and return the class map and confidence at the frame's
size, as the server's ``serving_default`` does; what the ``metadata`` signature would say comes
from the JSON sidecar the export writes beside the model (``deeplabv3.json``):

    with OnboardSegmenter("deeplabv3.tflite", threads=2) as onboard:  # or "deeplabv3.onnx"
        names = onboard.metadata().class_names
        result = onboard.segment(frame_bgr)  # an OpenCV frame, H×W×3 uint8 BGR
        result.class_map, result.source  # H×W uint8, "onboard"
        result.timings.rpc  # seconds of inference (encode: colour conversion)

The runtimes come with the ``onboard`` extra (``pip install 'rc-segmentation-client[onboard]'``)
and are imported only when a model is loaded. A model file that is missing or corrupt, a sidecar
that is missing, malformed or describes another model, and frames of the wrong dtype or shape
raise errors naming the file or the field.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from client import contract
from client.errors import ClientClosed, ClientError, InvalidResponse
from client.palette import ColorOrder
from client.results import ModelMetadata, Segmentation, StageTimings
from client.segmentation_client import check_frame, check_output_size, map_size

RUNTIMES = {".tflite": "LiteRT", ".onnx": "ONNX Runtime"}
"""Model file suffix → the runtime that runs it."""
SIDECAR_RUNTIMES = {".tflite": "tflite", ".onnx": "onnxruntime"}
"""Model file suffix → the sidecar's ``runtime`` field."""
SIDECAR_FORMAT = 1
"""The sidecar layout this runner reads (its ``format``; sidecars from before the field have
the same layout). A number it does not know is refused."""
RESIZE_IN = ("model", "runner")
"""Where a frame is resized to the network (``resize_in``): in the model (any frame size), or
here, for a model fixed at ``network_size`` (int8): bilinear in, nearest neighbour back."""
INSTALL_HINT = "pip install 'rc-segmentation-client[onboard]'"
ONBOARD_VERSION = 0
"""``Segmentation.model_version`` of onboard answers: a model file has no server version."""


class OnboardModelError(ClientError, ValueError):
    """A model file or sidecar that cannot be used: missing, corrupt, not matching each other,
    or a runtime that is not installed. The message names the file and the field."""


@dataclass(frozen=True)
class Sidecar:
    """The export's JSON beside the model: what the ``metadata`` signature says on a server,
    the names of the model's input and outputs, and the network size when the runner resizes
    (None: the model takes any frame size)."""

    path: Path
    model: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    metadata: ModelMetadata
    network_size: tuple[int, int] | None = None

    @classmethod
    def read(cls, model_path: Path) -> Sidecar:
        """The sidecar of ``model_path`` (same name, ``.json``), checked field by field."""
        path = model_path.with_suffix(".json")
        try:
            fields = json.loads(path.read_text())
        except FileNotFoundError:
            raise OnboardModelError(
                f"{path}: no sidecar beside {model_path.name} (the export writes one with the "
                "class names and palette; copy it along with the model)"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise OnboardModelError(f"{path}: not a readable JSON sidecar: {error}") from None
        if not isinstance(fields, dict):
            raise OnboardModelError(f"{path}: expected a JSON object, got {type(fields).__name__}")

        def field(name: str, check, meaning: str):
            if name not in fields:
                raise OnboardModelError(f"{path}: field {name!r} is missing")
            value = fields[name]
            if not check(value):
                raise OnboardModelError(f"{path}: field {name!r} must be {meaning}, got {value!r}")
            return value

        def ints(value, count: int | None = None) -> bool:
            return (
                isinstance(value, list)
                and (count is None or len(value) == count)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )

        def names(value) -> bool:
            return isinstance(value, dict | list) and all(isinstance(v, str) for v in value)

        version = fields.get("format", SIDECAR_FORMAT)
        if version != SIDECAR_FORMAT:
            raise OnboardModelError(
                f"{path}: field 'format' is {version!r}; this client reads format "
                f"{SIDECAR_FORMAT} (update the client, or export with a matching version)"
            )
        model = field("model", lambda v: isinstance(v, str) and v, "the model's file name")
        if model != model_path.name:
            raise OnboardModelError(
                f"{path}: field 'model' is {model!r}, not {model_path.name!r}: this sidecar "
                "describes another model (export the model again, or copy its own sidecar)"
            )
        runtime = fields.get("runtime", SIDECAR_RUNTIMES[model_path.suffix])
        if runtime != SIDECAR_RUNTIMES[model_path.suffix]:
            raise OnboardModelError(
                f"{path}: field 'runtime' is {runtime!r}, but {model_path.name} is a "
                f"{SIDECAR_RUNTIMES[model_path.suffix]!r} model"
            )
        classes = field(
            contract.CLASS_NAMES,
            lambda v: isinstance(v, list) and 0 < len(v) <= 255 and names(v),
            "a list of 1 to 255 class names",
        )
        palette = field(
            contract.PALETTE,
            lambda v: (
                isinstance(v, list)
                and len(v) == len(classes)
                and all(ints(c, 3) and all(0 <= x <= 255 for x in c) for c in v)
            ),
            f"one [R, G, B] (0..255) per class ({len(classes)})",
        )
        input_size = field(
            contract.INPUT_SIZE,
            lambda v: ints(v, 2) and min(v) > 0,
            "[height, width] in pixels",
        )
        stride = field(
            contract.OUTPUT_STRIDE, lambda v: isinstance(v, int) and v > 0, "a positive int"
        )
        inputs = field("inputs", names, "the model's input names")
        outputs = field("outputs", names, "the model's output names")
        resize_in = fields.get("resize_in", RESIZE_IN[0])
        if resize_in not in RESIZE_IN:
            raise OnboardModelError(
                f"{path}: field 'resize_in' must be one of {list(RESIZE_IN)}, got {resize_in!r}"
            )
        network_size = None
        if resize_in == "runner":
            network_size = field(
                "network_size", lambda v: ints(v, 2) and min(v) > 0, "[height, width] in pixels"
            )
        return cls(
            path=path,
            model=model,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            metadata=ModelMetadata(
                class_names=tuple(classes),
                palette=np.asarray(palette, np.uint8),
                input_size=(input_size[0], input_size[1]),
                output_stride=stride,
                model_version=ONBOARD_VERSION,
            ),
            network_size=None if network_size is None else (network_size[0], network_size[1]),
        )


class _LiteRt:
    """The TFLite export's ``serving_default`` signature on LiteRT (XNNPACK unless turned off)."""

    def __init__(self, path: Path, threads: int | None, xnnpack: bool):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise OnboardModelError(
                f"{path}: LiteRT (ai-edge-litert) is not installed: {INSTALL_HINT}"
            ) from None
        # AUTO applies LiteRT's default delegate, XNNPACK; the other runs the reference kernels.
        resolver = OpResolverType.AUTO
        if not xnnpack:
            resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = Interpreter(
                model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver
            )
        except (RuntimeError, ValueError) as error:
            raise OnboardModelError(
                f"{path}: not a TFLite model LiteRT can load: {error}"
            ) from None
        try:
            self._runner = interpreter.get_signature_runner(contract.SEGMENT.name)
        except ValueError:
            raise OnboardModelError(
                f"{path}: the model has no {contract.SEGMENT.name!r} signature (signatures: "
                f"{sorted(interpreter.get_signature_list())}): not this project's TFLite export"
            ) from None
        self.inputs = {name: d["dtype"] for name, d in self._runner.get_input_details().items()}
        self.outputs = tuple(self._runner.get_output_details())

    def run(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        # The runner resizes the interpreter to a new frame size (a re-allocation, once per size)
        # and computes every output anyway.
        return self._runner(**inputs)


class _OnnxRuntime:
    """The ONNX export on ONNX Runtime's CPU provider (or ``providers``)."""

    def __init__(self, path: Path, threads: int | None, providers: Sequence[str] | None):
        try:
            import onnxruntime
        except ImportError:
            raise OnboardModelError(
                f"{path}: ONNX Runtime (onnxruntime) is not installed: {INSTALL_HINT}"
            ) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
        options.log_severity_level = 3  # errors only
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as error:  # its pybind errors (InvalidProtobuf, Fail, …) share no base
            raise OnboardModelError(
                f"{path}: not an ONNX model ONNX Runtime can load: {error}"
            ) from None
        self.inputs = {
            i.name: np.dtype(np.uint8) if i.type == "tensor(uint8)" else i.type
            for i in self._session.get_inputs()
        }
        self.outputs = tuple(o.name for o in self._session.get_outputs())

    def run(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        values = self._session.run(list(outputs), inputs)
        return dict(zip(outputs, values, strict=True))


class OnboardSegmenter:
    """The exported model at ``model_path`` (``.tflite`` or ``.onnx``) with
    ``SegmentationClient``'s interface: ``segment``, ``segment_async``, ``metadata``, ``close``.

    ``threads`` is the runtime's thread count (None: its own default; LiteRT's XNNPACK
    delegate and ONNX Runtime's intra-op pool). ``xnnpack=False`` runs LiteRT's reference
    kernels instead (to measure the delegate). ``providers`` are ONNX Runtime's execution
    providers, in order of preference (``["CUDAExecutionProvider", "CPUExecutionProvider"]``
    on a Jetson). One interpreter runs one frame at a time: ``workers`` is 1. ``output_size``
    (height, width) gives the maps at a planner's resolution, as the remote client's does: a
    model that takes an ``output_size`` resizes its logits straight to it, the int8 runner
    resizes the network's map to it, an export from before the input resizes its map.
    """

    workers = 1

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        xnnpack: bool = True,
        providers: Sequence[str] | None = None,
        output_size: tuple[int, int] | None = None,
    ):
        path = Path(model_path)
        if path.suffix not in RUNTIMES:
            kinds = " or ".join(RUNTIMES)
            raise OnboardModelError(f"{path}: expected a {kinds} model file")
        if not path.is_file():
            raise OnboardModelError(f"{path}: no such model file")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 or None, got {threads}")
        self.path = path
        self.runtime = RUNTIMES[path.suffix]
        self.threads = threads
        self.output_size = check_output_size(output_size)
        self.sidecar = Sidecar.read(path)
        if path.suffix == ".tflite":
            self._model: _LiteRt | _OnnxRuntime = _LiteRt(path, threads, xnnpack)
        else:
            self._model = _OnnxRuntime(path, threads, providers)
        self._check_names()
        self._takes_output_size = contract.OUTPUT_SIZE in self._model.inputs
        self._lock = threading.Lock()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onboard")

    def _check_names(self) -> None:
        """The sidecar's ``inputs`` and ``outputs`` against the model's own."""
        wanted = {
            "inputs": ((contract.IMAGES,), tuple(self._model.inputs)),
            "outputs": (contract.SEGMENT.outputs, self._model.outputs),
        }
        for name, (needed, found) in wanted.items():
            said = getattr(self.sidecar, name)
            missing = [n for n in needed if n not in found]
            if missing or sorted(said) != sorted(found):
                raise OnboardModelError(
                    f"{self.sidecar.path}: field {name!r} says {sorted(said)}, but "
                    f"{self.path.name} has {sorted(found)} (this project's export has "
                    f"{list(needed)})"
                )
        dtype = self._model.inputs[contract.IMAGES]
        if dtype != np.uint8:
            raise OnboardModelError(
                f"{self.path}: input {contract.IMAGES!r} is {dtype}, expected uint8 RGB frames"
            )

    def metadata(self) -> ModelMetadata:
        """Class names, palette, input size and output stride, from the sidecar."""
        return self.sidecar.metadata

    def segment(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Segmentation:
        """The class map of one frame (H×W×3 uint8, ``color`` its channel order), at the
        frame's size. ``timeout`` is accepted for the remote client's sake and not used: an
        inference cannot be interrupted. Timings: ``encode`` is the colour conversion (and the
        resize to a fixed network size), ``rpc`` the inference (and waiting for the
        interpreter), ``decode`` the output checks (and the resize back)."""
        started = time.perf_counter()
        if self._closed:
            raise ClientClosed(f"the onboard model {self.path} is closed")
        check_frame(frame, color)
        size = map_size(frame.shape[:2], self.output_size)
        network_size = self.sidecar.network_size or frame.shape[:2]
        if network_size != frame.shape[:2]:
            frame = cv2.resize(frame, network_size[::-1], interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if color == "bgr" else frame
        inputs = {contract.IMAGES: np.ascontiguousarray(rgb)[np.newaxis]}
        answered_size = network_size
        if self._takes_output_size:
            # The model resizes its logits to the maps' size when it can: at most the size of
            # what it is given (the frame, or the runner's network size); else its own size.
            fits = size[0] <= network_size[0] and size[1] <= network_size[1]
            answered_size = size if fits else network_size
            inputs[contract.OUTPUT_SIZE] = np.int32([size if fits else (0, 0)])
        wanted = contract.SEGMENT.outputs if confidence else (contract.CLASS_MAP,)
        prepared = time.perf_counter()
        with self._lock:
            outputs = self._model.run(inputs, wanted)
        inferred = time.perf_counter()
        arrays = {name: self._output(outputs, name, answered_size, size) for name in wanted}
        classes = len(self.sidecar.metadata.class_names)
        if arrays[contract.CLASS_MAP].max(initial=0) >= classes:
            raise InvalidResponse(
                f"{self.path.name} gave class id {int(arrays[contract.CLASS_MAP].max())}, but "
                f"field {contract.CLASS_NAMES!r} of {self.sidecar.path} names {classes} classes: "
                "the sidecar does not match the model"
            )
        checked = time.perf_counter()
        return Segmentation(
            class_map=arrays[contract.CLASS_MAP],
            confidence=arrays.get(contract.CONFIDENCE),
            model_version=ONBOARD_VERSION,
            timings=StageTimings(prepared - started, inferred - prepared, checked - inferred),
            request_bytes=0,
            response_bytes=0,
            source="onboard",
        )

    def _output(
        self,
        outputs: dict[str, np.ndarray],
        name: str,
        answered_size: tuple[int, int],
        size: tuple[int, int],
    ) -> np.ndarray:
        """Output ``name`` checked, then resized from ``answered_size`` to the maps' ``size``
        (class ids and confidence are not interpolated: nearest neighbour), read-only as the
        remote client's answers."""
        array = outputs[name]
        if array.dtype != np.uint8 or array.shape != (1, *answered_size):
            raise InvalidResponse(
                f"{self.path.name}: output {name!r} is {array.dtype} {list(array.shape)}, "
                f"expected uint8 [1, {answered_size[0]}, {answered_size[1]}] for this frame"
            )
        array = array[0]
        if answered_size != size:
            array = cv2.resize(array, size[::-1], interpolation=cv2.INTER_NEAREST)
        array.flags.writeable = False  # as the remote client's answers
        return array

    def segment_async(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Future[Segmentation]:
        """``segment`` on the model's own thread; the future raises its ClientError."""
        if self._closed:
            raise ClientClosed(f"the onboard model {self.path} is closed")
        return self._executor.submit(self.segment, frame, color=color, confidence=confidence)

    def close(self) -> None:
        """Ends the model's thread once the frame it runs is done."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> OnboardSegmenter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
