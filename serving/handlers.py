"""TF Serving's Predict, GetModelMetadata and GetModelStatus on a ModelManager, proto in,
proto out, with TF Serving's defaults, status codes and messages (errors as ServingError).

    response = predict(manager, request, Limits())
    response.model_spec.version.value  # the version that answered
"""

from __future__ import annotations

import contextlib
import threading

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from client import contract
from client.errors import plain_reason
from serving.errors import ServingError, echo, invalid
from serving.inputs import check_inputs
from serving.manager import ModelManager
from serving.options import Limits
from serving.servable import LoadedVersion

DEFAULT_SIGNATURE = contract.SEGMENT.name  # TF Serving's default signature key
GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
STATES = get_model_status_pb2.ModelVersionStatus.State


def _model_spec(request) -> model_pb2.ModelSpec:
    """The request's ModelSpec; INVALID_ARGUMENT, as TF Serving, when it has none or no name."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    if not request.model_spec.name:
        raise invalid("ModelSpec has no name specified")
    return request.model_spec


def _requested(spec: model_pb2.ModelSpec) -> dict:
    return dict(
        name=spec.name,
        version=spec.version.value if spec.HasField("version") else None,
        label=spec.version_label or None,
    )


def _echo(spec: model_pb2.ModelSpec, version: LoadedVersion, signature: str) -> None:
    spec.name = version.name
    spec.version.value = version.version
    spec.signature_name = signature


def _output_names(signature_def, output_filter) -> list[str]:
    names = list(output_filter) or sorted(signature_def.outputs)
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise invalid(f"duplicate output tensor alias: {echo(duplicate)}")
    for name in names:
        if name not in signature_def.outputs:
            raise invalid(
                f"output tensor alias not found in signature: {echo(name)} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature_def.outputs))}}}."
            )
    return names


def predict_on(
    version: LoadedVersion,
    request: predict_pb2.PredictRequest,
    limits: Limits,
    run_slots: threading.Semaphore | None = None,
) -> predict_pb2.PredictResponse:
    """Runs ``request`` on one loaded version (the manager's choice, or a warmup record's)."""
    signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature_def = version.signature_defs.get(signature)
    if signature_def is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{echo(signature)}" not found.',
        )
    arrays = check_inputs(signature_def, request.inputs, limits)
    names = _output_names(signature_def, request.output_filter)
    try:
        with run_slots or contextlib.nullcontext():
            outputs = version.outputs_of(signature, names)(**arrays)
    except tf.errors.OpError as error:  # TF's codes are gRPC's canonical codes, as in TF Serving
        code = GRPC_CODES.get(error.error_code, grpc.StatusCode.INTERNAL)
        # The kernel's reason, without the eager call's framing (graph and node names).
        raise ServingError(code, plain_reason(error.message)) from None
    response = predict_pb2.PredictResponse()
    _echo(response.model_spec, version, signature)
    for name in names:
        # numpy → TensorProto: numeric outputs travel as one tensor_content buffer.
        response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
    return response


def predict(
    manager: ModelManager,
    request: predict_pb2.PredictRequest,
    limits: Limits,
    run_slots: threading.Semaphore | None = None,
) -> predict_pb2.PredictResponse:
    with manager.serving(**_requested(_model_spec(request))) as version:
        return predict_on(version, request, limits, run_slots)


def replay_warmup(version: LoadedVersion, limits: Limits) -> int:
    """Runs the version's ``assets.extra/tf_serving_warmup_requests`` (PredictLog records),
    as TF Serving does before a version goes AVAILABLE; a failing record fails the load."""
    path = version.path / contract.WARMUP_PATH
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {count} is not a predict_log (only those are run)")
        try:
            predict_on(version, log.predict_log.request, limits)
        except ServingError as error:
            raise ValueError(f"{path}: warmup record {count} failed: {error.message}") from None
        count += 1
    return count


def get_model_metadata(
    manager: ModelManager, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    fields = list(request.metadata_field)
    if not fields:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != "signature_def":
            raise invalid(f"Metadata field {echo(field)} is not supported")
    with manager.serving(**_requested(_model_spec(request))) as version:
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = version.name
        response.model_spec.version.value = version.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in version.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response


def get_model_status(
    manager: ModelManager, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    spec = _model_spec(request)
    if spec.version_label:
        with manager.serving(**_requested(spec)) as version:
            wanted = version.version
    else:
        wanted = spec.version.value if spec.HasField("version") else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.versions(spec.name, wanted):
        entry = response.model_version_status.add(
            version=status.version, state=STATES.Value(status.state)
        )
        if status.error:
            entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            entry.status.error_message = status.error
    return response
