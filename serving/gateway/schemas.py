"""The JSON the gateway answers, as pydantic models: ``/docs`` and ``/openapi.json`` show each
answer's schema from these, and the routes build their bodies with them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """Base of the answers: every field is always sent, so the schema marks each required
    (a default only saves the code from spelling it)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ErrorBody(Answer):
    """Every refusal and failure: the status says what kind, ``detail`` says why."""

    detail: str = Field(examples=["expected a JPEG or PNG image, got a GIF"])


class Health(Answer):
    """The gateway process answers (it says nothing about the model server)."""

    status: Literal["ok"] = "ok"


class VersionState(Answer):
    """One model version on one server, as TF Serving's GetModelStatus reports it."""

    version: int
    state: str = Field(description="START, LOADING, AVAILABLE, UNLOADING or END")
    error: str = Field(description="the server's message when loading failed, else empty")


class Readiness(Answer):
    """Whether every model server has a version of the model AVAILABLE (503 when not)."""

    ready: bool
    model: str
    servers: dict[str, list[VersionState]] = Field(description="version states by target")


class Limits(Answer):
    """What this gateway accepts; larger uploads are refused with 413."""

    max_upload_bytes: int
    max_pixels: int


class ModelInfo(Answer):
    """What the model's ``metadata`` signature says, with the versions the servers hold."""

    model: str
    version: int = Field(description="the version that answered the metadata call")
    class_names: list[str] = Field(description="by class id")
    palette: list[list[int]] = Field(description="RGB colour per class id, 0..255")
    input_size: list[int] = Field(description="the network's input [height, width]")
    output_stride: int
    versions: list[VersionState]
    limits: Limits


class ClassPresence(Answer):
    """One class that the class map holds, with its share of the pixels."""

    id: int
    name: str
    pixels: int
    fraction: float = Field(description="pixels / (height × width), 6 decimals")


class RunLength(Answer):
    """The class map, run-length encoded: ``values[i]`` repeated ``counts[i]`` times, row by
    row, rebuilds it."""

    order: Literal["row-major"] = "row-major"
    values: list[int]
    counts: list[int]


class Timings(Answer):
    """Milliseconds in the gateway (also sent as ``Server-Timing``)."""

    read: float = Field(description="reading and checking the upload")
    rpc: float = Field(description="the model server's call")
    encode: float = Field(
        description="counting classes and encoding the answer (and fetching the metadata "
        "of a version that answers for the first time)"
    )
    total: float


class SegmentAnswer(Answer):
    """``format=json``: the class map and what is in it."""

    model: str
    model_version: int
    height: int
    width: int
    class_names: list[str] = Field(description="by class id")
    classes_present: list[ClassPresence] = Field(description="ascending class id")
    class_map_rle: RunLength
    timings_ms: Timings
