"""The SavedModel and serving contract, written once.

Export writes these names, the embedded server and TF Serving serve them, the client and the
gateway call them. Every part imports them from here (this module needs nothing but the
standard library), the way TensorFlow spells its own in ``signature_constants``:

    >>> from client import contract
    >>> contract.SEGMENT.name, contract.SEGMENT.inputs, contract.SEGMENT.outputs
    ('serving_default', ('images', 'output_size'), ('class_map', 'confidence'))

    versions = contract.version_folders("models/deeplabv3")  # {1: Path("models/deeplabv3/1")}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_MODEL_NAME = "deeplabv3"
"""The model's name in ``models.config``, its folder under ``models/``, and in every request."""

GRPC_PORT = 8500
"""TF Serving's gRPC port (PredictionService, ModelService, grpc.health.v1)."""
REST_PORT = 8501
"""TF Serving's REST port."""
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
"""TF Serving's gRPC service for Predict and GetModelMetadata, and the name the servers'
``grpc.health.v1`` reports on (the clients' health-checked load balancing asks for it)."""
MODEL_SERVICE = "tensorflow.serving.ModelService"
"""TF Serving's gRPC service for GetModelStatus and HandleReloadConfigRequest."""
GATEWAY_PORT = 8000
"""The HTTP gateway's port (``python -m serving gateway``)."""

DEFAULT_MAX_PIXELS = 8_000_000
"""Pixels one request may carry (all its frames together), in the server and the gateway alike:
an image that the gateway lets through is one the server accepts."""

# Tensor names: the inputs and outputs of the signatures below.
IMAGES = "images"
JPEG = "jpeg"
METADATA_REQUEST = "request"
OUTPUT_SIZE = "output_size"
CLASS_MAP = "class_map"
CONFIDENCE = "confidence"
CLASS_NAMES = "class_names"
PALETTE = "palette"
INPUT_SIZE = "input_size"
OUTPUT_STRIDE = "output_stride"

INPUT_DEFAULTS: dict[str, tuple] = {OUTPUT_SIZE: ((0, 0),), METADATA_REQUEST: (0,)}
"""What a request that leaves an optional input out gets (the SignatureDefs record these, TF
Serving and the embedded server fill them; Python's loaded signature functions do not):
``output_size`` ``[[0, 0]]`` is the frame's own size."""


@dataclass(frozen=True)
class Signature:
    """A signature's name and the names of its input and output tensors."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def optional(self) -> tuple[str, ...]:
        """The inputs with a recorded default (:data:`INPUT_DEFAULTS`): a request may leave
        them out, TF Serving fills them."""
        return tuple(name for name in self.inputs if name in INPUT_DEFAULTS)


SEGMENT = Signature(
    "serving_default",
    inputs=(IMAGES, OUTPUT_SIZE),
    outputs=(CLASS_MAP, CONFIDENCE),
)
"""uint8 RGB ``[N,H,W,3]`` → uint8 ``class_map`` and ``confidence`` ``[N,H,W]``; an optional
int32 ``output_size`` ``[1,2]`` or ``[N,2]`` (rows alike, default ``[[0, 0]]``: the frame's
size) asks for ``[N,h,w]`` maps instead. Exports from before it lack that input."""
SEGMENT_JPEG = Signature(
    "segment_jpeg",
    inputs=(JPEG, OUTPUT_SIZE),
    outputs=(CLASS_MAP, CONFIDENCE),
)
"""Encoded JPEG or PNG strings ``[N]`` → the same outputs at each decoded image's size (or at
``output_size``)."""
METADATA = Signature(
    "metadata",
    inputs=(METADATA_REQUEST,),
    outputs=(CLASS_NAMES, PALETTE, INPUT_SIZE, OUTPUT_STRIDE),
)
"""int32 ``[N]`` (a recorded default ``[0]``) → the model's classes, colours and sizes."""

SIGNATURES: dict[str, Signature] = {s.name: s for s in (SEGMENT, SEGMENT_JPEG, METADATA)}
"""Every signature an export carries, by name."""

EXPORT_INFO_PATH = PurePosixPath("assets.extra/export.json")
"""Inside a version folder: what export recorded (run, options, verification figures)."""
WARMUP_PATH = PurePosixPath("assets.extra/tf_serving_warmup_requests")
"""Inside a version folder: the PredictionLog records TF Serving replays after loading."""

_VERSION_NAME = re.compile(r"[0-9]+")


def is_version_name(name: str) -> bool:
    """True for a folder name TF Serving takes as a version: ASCII digits only (``"3"``, not
    ``"²"``, ``"3.rolled-back"`` or ``" 3"``)."""
    return _VERSION_NAME.fullmatch(name) is not None


def version_folders(base: str | Path) -> dict[int, Path]:
    """The version folders of one model, by number, ascending (TF Serving's rule).

    ``base`` is ``models/<name>``; a missing folder has no versions.
    """
    base = Path(base)
    if not base.is_dir():
        return {}
    found = {int(p.name): p for p in base.iterdir() if p.is_dir() and is_version_name(p.name)}
    return dict(sorted(found.items()))


def read_export_info(version_dir: str | Path) -> dict:
    """A version's ``export.json`` (run, options, verification figures); OSError when it has
    none, ValueError when it is not JSON."""
    return json.loads((Path(version_dir) / EXPORT_INFO_PATH).read_text())


def versions_exported_from(base: str | Path, run: str | Path) -> dict[int, Path]:
    """The version folders of ``base`` whose ``export.json`` names training run ``run``.

    A version without a readable export.json (TF Serving's own, one copied in by hand) was
    not exported from any run and is never among them.
    """
    run = Path(run).resolve()
    found = {}
    for number, folder in version_folders(base).items():
        try:
            exported_from = read_export_info(folder).get("run")
        except (OSError, ValueError):
            continue
        if exported_from is not None and Path(exported_from).resolve() == run:
            found[number] = folder
    return found
