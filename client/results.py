"""What ``SegmentationClient`` hands back: plain frozen dataclasses, no gRPC.

``Segmentation`` is one frame's answer, ``StageTimings`` where its time went, ``ModelMetadata``
what the model's ``metadata`` signature says, ``VersionStatus`` one version's state on a server.
They are built from decoded outputs by the names in ``client.contract``:

    >>> import numpy as np
    >>> from client import contract
    >>> outputs = {
    ...     contract.CLASS_NAMES: np.array([[b"background", b"road"]], object),
    ...     contract.PALETTE: np.array([[[0, 0, 0], [128, 64, 128]]], np.uint8),
    ...     contract.INPUT_SIZE: np.array([[512, 512]], np.int32),
    ...     contract.OUTPUT_STRIDE: np.array([16], np.int32),
    ... }
    >>> metadata = ModelMetadata.from_outputs(outputs, model_version=3)
    >>> metadata.class_names, metadata.input_size, metadata.output_stride
    (('background', 'road'), (512, 512), 16)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from client import contract
from client.errors import InvalidResponse

Source = Literal["remote", "onboard"]
"""Who answered a frame: a model server, or the model on the vehicle."""


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage of one call: encoding the frame and the request, the RPC
    (network and server), decoding the answer."""

    encode: float
    rpc: float
    decode: float

    @property
    def total(self) -> float:
        return self.encode + self.rpc + self.decode


@dataclass(frozen=True)
class Segmentation:
    """The answer for one frame; ``class_map`` (and ``confidence``) have the frame's H×W.

    The arrays are read-only views of the received bytes (no copy); ``.copy()`` to edit.
    ``source`` says who answered: ``"remote"`` (a model server) or ``"onboard"`` (the model
    run on the vehicle, ``client.onboard``; its ``timings.rpc`` is the inference, its version
    and byte counts 0)."""

    class_map: np.ndarray
    confidence: np.ndarray | None
    model_version: int
    timings: StageTimings
    request_bytes: int
    response_bytes: int
    source: Source = "remote"


@dataclass(frozen=True)
class ModelMetadata:
    """What the model's ``metadata`` signature says: class names, RGB palette [C,3], the
    network's input size and output stride."""

    class_names: tuple[str, ...]
    palette: np.ndarray
    input_size: tuple[int, int]
    output_stride: int
    model_version: int

    @classmethod
    def from_outputs(
        cls, outputs: Mapping[str, np.ndarray], model_version: int, model: str | None = None
    ) -> ModelMetadata:
        """Reads the ``metadata`` signature's decoded outputs; raises InvalidResponse, naming
        ``model``, when one is missing or empty."""
        try:
            # The signature answers one row per request element; its default input asks one.
            return cls(
                class_names=tuple(v.decode() for v in outputs[contract.CLASS_NAMES][0]),
                palette=np.asarray(outputs[contract.PALETTE][0], np.uint8),
                input_size=tuple(int(v) for v in outputs[contract.INPUT_SIZE][0]),
                output_stride=int(outputs[contract.OUTPUT_STRIDE][0]),
                model_version=model_version,
            )
        except (KeyError, IndexError) as error:
            of_model = f" of {model!r}" if model is not None else ""
            raise InvalidResponse(
                f"{contract.METADATA.name} signature{of_model} lacks {error}: got outputs "
                f"{ {k: v.shape for k, v in outputs.items()} }"
            ) from None


@dataclass(frozen=True)
class VersionStatus:
    """One model version's state on one server, as GetModelStatus reports it (``AVAILABLE``,
    ``LOADING``, …) with the error that ended it, if any."""

    version: int
    state: str
    error: str
