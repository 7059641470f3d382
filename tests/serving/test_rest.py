"""TF Serving's REST API on the embedded server, called over HTTP on 127.0.0.1: the requests of
TF Serving's REST documentation, answers compared with gRPC's, every bad input with its HTTP
status and ``{"error": …}`` body (the server answering after each), the metrics page, draining
on stop, and ``python -m serving --rest-port``; JSON ⇄ tensors for the dtypes the model has no
input of, without a server."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import rest_json
from serving.cli import build_parser
from serving.errors import ServingError
from serving.model_config import ModelSource
from serving.options import MIB, ServerOptions
from serving.server import EmbeddedServer
from tests.serving.conftest import LIMITS

MODEL = "/v1/models/deeplabv3"
MESSAGE_LIMIT = 4 * MIB


def _start(served_models, **options) -> EmbeddedServer:
    source = ModelSource("deeplabv3", served_models, labels={"stable": 1})
    options = {"limits": LIMITS, "max_message_bytes": MESSAGE_LIMIT, "rest_port": 0, **options}
    server = EmbeddedServer(
        [source], ServerOptions(host="127.0.0.1", port=0, poll_seconds=60, **options)
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def server(served_models):
    """One server for the module (its tests leave it as they found it)."""
    server = _start(served_models)
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=f"http://127.0.0.1:{server.rest.port}", timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_predict(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict


def _frames(n=1, h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame[..., ::-1])[1].tobytes()


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _grpc_outputs(predict, signature: str, name: str, values) -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "deeplabv3"
    request.model_spec.signature_name = signature
    request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return {k: tf.make_ndarray(v) for k, v in predict(request).outputs.items()}


DEFAULT_SIZE = [0, 0]  # output_size [0, 0]: the maps at the frame's size


def _columns(images, name: str = "images") -> dict:
    """An ``inputs`` object naming every input: TF Serving's JSON reader fills no defaults."""
    return {name: images, "output_size": [DEFAULT_SIZE]}


def _rows(frames, name: str = "images") -> list[dict]:
    """``instances`` as objects, one ``output_size`` row per frame (it has the batch axis)."""
    return [{name: frame, "output_size": DEFAULT_SIZE} for frame in frames]


def _still_answers(http) -> None:
    answer = http.post(f"{MODEL}:predict", json={"instances": _rows(_frames(1, 8, 8).tolist())})
    assert answer.status_code == 200, answer.text
    assert np.array(answer.json()["predictions"][0]["class_map"]).shape == (8, 8)


# --- answers ---------------------------------------------------------------------------------


def test_model_status_is_printed_as_tf_serving_prints_it(http):
    ok = {"error_code": "OK", "error_message": ""}
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]}
    for path in (MODEL, f"{MODEL}/versions/1", f"{MODEL}/labels/stable"):
        answer = http.get(path)
        assert answer.status_code == 200 and answer.json() == expected, (path, answer.text)
        assert answer.headers["content-type"] == "application/json"


def test_metadata_is_the_signature_def_map_as_json(http, server):
    answer = http.get(f"{MODEL}/metadata")
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["model_spec"] == {"name": "deeplabv3", "signature_name": "", "version": "1"}
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.port}")
    )
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "deeplabv3"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(request).metadata["signature_def"].Unpack(signatures)
    assert doc["metadata"]["signature_def"] == json_format.MessageToDict(
        signatures, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    images = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert images["images"]["dtype"] == "DT_UINT8"
    assert http.get(f"{MODEL}/labels/stable/metadata").json()["model_spec"]["version"] == "1"


def test_predict_rows_and_columns_answer_what_grpc_answers(http, grpc_predict):
    frames = _frames(2, 37, 53)
    expected = _grpc_outputs(grpc_predict, "serving_default", "images", frames)
    rows = http.post(f"{MODEL}:predict", json={"instances": _rows(frames.tolist())})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"class_map", "confidence"}
    for name in ("class_map", "confidence"):
        got = np.array([row[name] for row in predictions])
        np.testing.assert_array_equal(got, expected[name])
    columns = http.post(f"{MODEL}:predict", json={"inputs": _columns(frames.tolist())})
    assert columns.status_code == 200, columns.text
    outputs = columns.json()["outputs"]
    for name in ("class_map", "confidence"):
        np.testing.assert_array_equal(np.array(outputs[name]), expected[name])
    for path in (f"{MODEL}/versions/1:predict", f"{MODEL}/labels/stable:predict"):
        body = {"inputs": _columns(frames.tolist())}
        assert http.post(path, json=body).status_code == 200
    # The plain forms of a client from before output_size: TF Serving refuses them ("instances
    # is a plain list, but expecting list of objects …"); here output_size, the one input with
    # a default, is left to its default (a leniency), so they answer as before.
    plain_rows = http.post(f"{MODEL}:predict", json={"instances": frames.tolist()})
    assert plain_rows.json()["predictions"] == predictions, plain_rows.text
    plain_columns = http.post(f"{MODEL}:predict", json={"inputs": frames.tolist()})
    np.testing.assert_array_equal(
        np.array(plain_columns.json()["outputs"]["class_map"]), expected["class_map"]
    )
    mixed = {"instances": [{"images": frames[0].tolist()}, _rows(frames[1:].tolist())[0]]}
    refused = http.post(f"{MODEL}:predict", json=mixed)  # rows must name the same inputs
    assert refused.status_code == 400 and "must only have keys" in refused.json()["error"]


def test_output_size_over_rest(http, grpc_predict):
    frames = _frames(1, 60, 80)
    body = {"inputs": {"images": frames.tolist(), "output_size": [[15, 20]]}}
    answer = http.post(f"{MODEL}:predict", json=body)
    assert answer.status_code == 200, answer.text
    assert np.array(answer.json()["outputs"]["class_map"]).shape == (1, 15, 20)
    body["inputs"]["output_size"] = [[61, 80]]
    refused = http.post(f"{MODEL}:predict", json=body)
    assert refused.status_code == 400 and "output_size must be [0, 0]" in refused.json()["error"]
    _still_answers(http)


def test_segment_jpeg_takes_b64_bytes(http, grpc_predict):
    jpegs = [_jpeg(_frames(1, 60, 80, seed)[0]) for seed in (1, 2)]
    expected = _grpc_outputs(grpc_predict, "segment_jpeg", "jpeg", jpegs)["class_map"]
    for body in (
        {"signature_name": "segment_jpeg", "instances": _rows([_b64(j) for j in jpegs], "jpeg")},
        {"signature_name": "segment_jpeg", "inputs": _columns([_b64(j) for j in jpegs], "jpeg")},
    ):
        answer = http.post(f"{MODEL}:predict", json=body)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        got = (
            doc["outputs"]["class_map"]
            if "outputs" in doc
            else [row["class_map"] for row in doc["predictions"]]
        )
        np.testing.assert_array_equal(np.array(got), expected)
    # absl's decoder takes base64 without padding, and with `base64`'s line breaks.
    unpadded = _b64(jpegs[0])["b64"].rstrip("=")
    wrapped = base64.encodebytes(jpegs[1]).decode()
    assert "\n" in wrapped.strip()
    columns = {
        "signature_name": "segment_jpeg",
        "inputs": _columns([{"b64": unpadded}, {"b64": wrapped}], "jpeg"),
    }
    answer = http.post(f"{MODEL}:predict", json=columns)
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(np.array(answer.json()["outputs"]["class_map"]), expected)


def test_the_metadata_signature_answers_strings_and_takes_its_default(http):
    for body in (
        {"signature_name": "metadata", "inputs": {}},  # the recorded default, as over gRPC
        {"signature_name": "metadata", "instances": [0]},
    ):
        answer = http.post(f"{MODEL}:predict", json=body)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        first = doc["outputs"] if "outputs" in doc else doc["predictions"][0]
        names = first["class_names"][0] if "outputs" in doc else first["class_names"]
        assert names[15] == "person"
        size = first["input_size"]
        assert size == ([[64, 64]] if "outputs" in doc else [64, 64])


# --- errors ----------------------------------------------------------------------------------

FRAME = _frames(1, 8, 8).tolist()
BAD_CALLS = {
    # name: (method, path, body (JSON, or bytes as sent), HTTP status, part of the error)
    "malformed JSON": ("POST", f"{MODEL}:predict", b'{"instances": [', 400, "JSON Parse error"),
    "an empty body": ("POST", f"{MODEL}:predict", b"", 400, "The document is empty"),
    "JSON that is no object": ("POST", f"{MODEL}:predict", [1, 2], 400, "Is not object"),
    "bytes that are no UTF-8": ("POST", f"{MODEL}:predict", b'{"a": "\xff"}', 400, "JSON Parse"),
    "UTF-16": (
        "POST", f"{MODEL}:predict", '{"inputs": [0]}'.encode("utf-16"), 400,
        "JSON Parse error: Invalid encoding",
    ),
    "an unpaired surrogate": (
        "POST", f"{MODEL}:predict", b'{"signature_name": "\\ud800", "inputs": [0]}', 400,
        "JSON Parse error: The surrogate pair in string is invalid.",
    ),
    "an integer of 5,000 digits": (
        "POST", f"{MODEL}:predict", b'{"inputs": [' + b"9" * 5000 + b"]}", 400,
        "JSON Parse error: Number too big",
    ),
    "no inputs": ("POST", f"{MODEL}:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
    "rows and columns": (
        "POST", f"{MODEL}:predict", {"instances": _rows(FRAME), "inputs": _columns(FRAME)}, 400,
        "expecting only one of 'inputs' or 'instances' keys",
    ),
    "instances not a list": (
        "POST", f"{MODEL}:predict", {"instances": 3}, 400, "to be an list/array"
    ),
    "no instances": ("POST", f"{MODEL}:predict", {"instances": []}, 400, "No values in"),
    "a signature name that is no string": (
        "POST", f"{MODEL}:predict", {"signature_name": 1, "inputs": _columns(FRAME)}, 400,
        "'signature_name' key must be a string value",
    ),
    "strings for uint8": (
        "POST", f"{MODEL}:predict", {"instances": _rows([[[["a", "b", "c"]]]])}, 400,
        'JSON Value: "a" Type: String is not of expected type: uint8',
    ),
    "fractions for uint8": (
        "POST", f"{MODEL}:predict", {"inputs": _columns([[[[0.5, 1, 2]]]])}, 400,
        "JSON Value: 0.5 Type: Number is not of expected type: uint8",
    ),
    "a ragged frame": (
        "POST", f"{MODEL}:predict", {"inputs": _columns([[[[1, 2, 3]], [[1, 2]]]])}, 400,
        "Encountered list at unexpected size: 2 at level: 3 expected size: 3",
    ),
    "rows of two sizes": (
        "POST", f"{MODEL}:predict", {"instances": _rows([[[[1, 2, 3]]], [[[1, 2, 3], [4, 5, 6]]]])},
        400, "Failed to process element: 1 key: images of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 3 but got: 6",
    ),
    "a frame without batch axis": (
        "POST", f"{MODEL}:predict", {"inputs": _columns(FRAME[0])}, 400,
        "input images: expected rank 4 [?,?,?,3], got shape [8, 8, 3]",
    ),
    "RGBA": (
        "POST", f"{MODEL}:predict", {"inputs": _columns([[[[1, 2, 3, 4]]]])}, 400,
        "input images: dimension 3 must be 3 (RGB channels)",
    ),
    "300 for uint8": (
        "POST", f"{MODEL}:predict", {"inputs": _columns([[[[300, 1, 2]]]])}, 400,
        "input images: a value does not fit DT_UINT8",
    ),
    "a batch over the limit": (
        "POST", f"{MODEL}:predict", {"instances": _rows([[[[1, 2, 3]]]] * 5)}, 400,
        "a batch of 5 exceeds this server's limit of 4",
    ),
    "a row object naming no input": (
        "POST", f"{MODEL}:predict",
        {"instances": [{"images": FRAME[0], "output_size": DEFAULT_SIZE, "mask": 1}]}, 400,
        "Failed to process element: 0 key: mask of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: mask",
    ),
    "b64 that is no base64": (
        "POST", f"{MODEL}:predict",
        {"signature_name": "segment_jpeg", "instances": _rows([{"b64": "not base64!"}], "jpeg")},
        400,
        "Unable to base64 decode",
    ),
    "a b64 object that is no string": (
        "POST", f"{MODEL}:predict",
        {"signature_name": "segment_jpeg", "inputs": _columns([{"b64": 1}], "jpeg")},
        400, "not formatted correctly for base64 data",
    ),
    "text that is no image": (
        "POST", f"{MODEL}:predict",
        {"signature_name": "segment_jpeg", "inputs": _columns(["hello"], "jpeg")}, 400,
        "input jpeg[0]: not a decodable JPEG or PNG image (5 bytes",
    ),
    "an unknown model": (
        "POST", "/v1/models/nope:predict", {"inputs": _columns(FRAME)}, 404,
        "Servable not found for request: Latest(nope)",
    ),
    "an unknown version": (
        "POST", f"{MODEL}/versions/7:predict", {"inputs": _columns(FRAME)}, 404,
        "Servable not found for request: Specific(deeplabv3, 7)",
    ),
    "an unknown label": (
        "POST", f"{MODEL}/labels/canary:predict", {"inputs": _columns(FRAME)}, 400,
        "Unrecognized servable version label: canary",
    ),
    "an unknown signature": (
        "POST", f"{MODEL}:predict", {"signature_name": "nope", "inputs": _columns(FRAME)}, 400,
        'Serving signature name: "nope" not found in signature def',
    ),
    "the status of an unknown model": (
        "GET", "/v1/models/nope", None, 404, "Servable not found for request: Latest(nope)"
    ),
    "the status of an unknown version": (
        "GET", f"{MODEL}/versions/9", None, 404, "Could not find version 9 of model deeplabv3"
    ),
    "the metadata of an unknown version": (
        "GET", f"{MODEL}/versions/9/metadata", None, 404, "Specific(deeplabv3, 9)"
    ),
    "a version past int64": (
        "GET", f"{MODEL}/versions/99999999999999999999", None, 400, "Failed to convert version"
    ),
    "no model name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "classify": (
        "POST", f"{MODEL}:classify", {"examples": []}, 501, "classify is not served here"
    ),
    "an unknown verb": (
        "POST", f"{MODEL}:explain", {}, 400, f"Malformed request: POST {MODEL}:explain"
    ),
    "GET on predict": ("GET", f"{MODEL}:predict", None, 400, "Malformed request: GET"),
    "DELETE": ("DELETE", MODEL, None, 400, f"Malformed request: DELETE {MODEL}"),
    "a path outside the API": ("GET", "/v2/models/deeplabv3", None, 404, "not found"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_calls_get_tf_servings_status_and_error_and_the_server_keeps_answering(http, case):
    method, path, body, status, message = BAD_CALLS[case]
    content = body if isinstance(body, bytes) else None
    answer = http.request(method, path, content=content, json=None if content is not None else body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert message in answer.json()["error"], answer.json()
    _still_answers(http)


def test_echoes_are_bounded(http):
    long = "s" * 100_000
    answer = http.post(f"{MODEL}:predict", json={"signature_name": long, "inputs": _columns(FRAME)})
    assert answer.status_code == 400 and len(answer.json()["error"]) < 300
    answer = http.post(f"{MODEL}:predict", json={"instances": [["x" * 100_000]]})
    assert answer.status_code == 400 and len(answer.json()["error"]) < 400


def _raw_call(port: int, head: bytes) -> bytes:
    """The answer to a request's head alone (its body never sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        length = int(re.search(rb"content-length: (\d+)", received, re.I).group(1))
        while len(received.partition(b"\r\n\r\n")[2]) < length:
            received += connection.recv(65536)
        return received


def test_a_body_over_the_message_limit_is_413_before_it_is_read(server, http):
    head = (
        f"POST {MODEL}:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MESSAGE_LIMIT + 1}\r\n\r\n"
    ).encode()
    answer = _raw_call(server.rest.port, head)  # no body sent: answered from the header
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error":"the request body is larger than this server accepts (4,194,304' in answer
    # Sent in chunks, with no length declared: refused once the limit is passed.
    chunk = b" " * (256 * 1024)
    answer = http.post(f"{MODEL}:predict", content=iter([chunk] * 17))
    assert answer.status_code == 413, answer.text
    _still_answers(http)


def _count(registry, method: str, code: str, signature: str = "") -> float:
    labels = {"method": method, "model": "deeplabv3", "signature": signature, "code": code}
    return registry.get_sample_value("rcseg_requests_total", labels) or 0.0


def test_rest_and_grpc_calls_count_in_the_same_metrics(http, server, grpc_predict):
    registry = server.metrics.registry
    before = {
        "status": _count(registry, "GetModelStatus", "OK"),
        "jpeg": _count(registry, "Predict", "INVALID_ARGUMENT", "segment_jpeg"),
        "predict": _count(registry, "Predict", "OK", "serving_default"),
    }
    http.get(MODEL)
    http.get("/v1/models/nope")
    # The signature is the body's, read once the call has parsed it.
    http.post(
        f"{MODEL}:predict",
        json={"signature_name": "segment_jpeg", "inputs": _columns(["x"], "jpeg")},
    )
    _grpc_outputs(grpc_predict, "", "images", _frames(1, 8, 8))
    answer = http.get("/monitoring/prometheus/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert 'code="NOT_FOUND",method="GetModelStatus",model="(unknown)"' in answer.text
    assert _count(registry, "GetModelStatus", "OK") == before["status"] + 1
    assert _count(registry, "Predict", "INVALID_ARGUMENT", "segment_jpeg") == before["jpeg"] + 1
    assert _count(registry, "Predict", "OK", "serving_default") == before["predict"] + 1
    assert registry.get_sample_value("rcseg_requests_in_flight") == 0


def test_help_names_the_flag():
    assert "--rest-port" in build_parser().format_help()


def test_a_rest_port_in_use_fails_the_start_and_one_port_may_serve_metrics_too(served_models):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{busy} \\(REST"):
            _start(served_models, rest_port=busy)
    server = _start(served_models, rest_port=busy, metrics_port=busy)
    try:
        assert server.metrics_http is None and server.rest.port == busy
        answer = httpx.get(f"http://127.0.0.1:{busy}/monitoring/prometheus/metrics")
        assert answer.status_code == 200 and "rcseg_model_version_state" in answer.text
    finally:
        server.stop(grace=1.0)


# --- JSON ⇄ tensors for the dtypes this model has no input of (no server) ----------------------

T = types_pb2


def _signature(**dtypes: int) -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef()
    for name, dtype in dtypes.items():
        signature.inputs[name].dtype = dtype
    return signature


def _inputs(doc: dict, **dtypes: int) -> dict[str, np.ndarray]:
    _, tensors = rest_json.request_inputs(doc, _signature(**dtypes))
    return {name: tf.make_ndarray(tensor) for name, tensor in tensors.items()}


BIG = 2**64 - 1
CONVERTED = [
    # (request, its input's dtype, the tensor expected)
    ({"inputs": [1.5, 2, float("nan"), float("-inf")]}, T.DT_FLOAT, [1.5, 2, np.nan, -np.inf]),
    ({"inputs": [[0.1], [2**53 - 1]]}, T.DT_DOUBLE, [[0.1], [2**53 - 1]]),
    ({"inputs": [2**63 - 1, -(2**63)]}, T.DT_INT64, [2**63 - 1, -(2**63)]),
    # numpy alone reads these as float64 (2**64 - 1 became 0): every integer kept exact.
    ({"inputs": [BIG, 0]}, T.DT_UINT64, np.array([BIG, 0], np.uint64)),
    ({"instances": [[BIG], [1]]}, T.DT_UINT64, np.array([[BIG], [1]], np.uint64)),
    ({"inputs": [[True, False]]}, T.DT_BOOL, [[True, False]]),
    ({"inputs": [[], []]}, T.DT_INT32, np.zeros((2, 0))),
    ({"instances": ["a", {"b64": "aGk"}]}, T.DT_STRING, [b"a", b"hi"]),
    ({"inputs": {"b64": "aGk="}}, T.DT_STRING, b"hi"),
]


@pytest.mark.parametrize("doc, dtype, expected", CONVERTED)
def test_json_values_become_tensors_of_the_signatures_dtype(doc, dtype, expected):
    (got,) = _inputs(doc, x=dtype).values()
    assert got.dtype == tf.dtypes.as_dtype(dtype).as_numpy_dtype
    np.testing.assert_array_equal(got, np.array(expected, dtype=got.dtype))


REFUSED = [
    # (request, its inputs' dtypes, TF Serving's message)
    ({"inputs": [1, 2**24]}, {"x": T.DT_FLOAT}, "Cannot convert JSON value: 16777216 to float"),
    ({"inputs": [1e39]}, {"x": T.DT_FLOAT}, "1e+39 to float without loss of precision"),
    ({"inputs": [BIG, -1]}, {"x": T.DT_UINT64}, "JSON Value: -1 Type: Number is not of"),
    ({"inputs": [1, 0]}, {"x": T.DT_BOOL}, "JSON Value: 1 Type: Number is not of expected type"),
    ({"inputs": [1.0]}, {"x": T.DT_INT32}, "JSON Value: 1.0 Type: Number is not of"),
    ({"inputs": [1, None]}, {"x": T.DT_INT32}, "JSON Value: null Type: Null is not of"),
    ({"inputs": [[1, 2], 3]}, {"x": T.DT_INT32}, "JSON Value: 3 found at incorrect level: 2"),
    ({"inputs": [[1, 2], [3, [4]]]}, {"x": T.DT_INT32}, "Encountered list at unexpected level"),
    ({"inputs": [1]}, {"a": T.DT_INT32, "b": T.DT_INT32}, "expecting an object as multiple"),
    ({"inputs": {"a": [1]}}, {"a": T.DT_INT32, "b": T.DT_INT32}, "Missing named input: b"),
    ({"instances": [{"a": 1}]}, {"a": T.DT_INT32, "b": T.DT_INT32}, "must only have keys: a,b"),
    ({"instances": [{"a": 1}, [2]]}, {"a": T.DT_INT32}, "Expecting object but got list at item 1"),
]


@pytest.mark.parametrize("doc, dtypes, message", REFUSED)
def test_json_values_that_do_not_fit_are_refused_with_tf_servings_message(doc, dtypes, message):
    with pytest.raises(ServingError) as refused:
        _inputs(doc, **dtypes)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.message


# --- shutdown --------------------------------------------------------------------------------


def _slow_body() -> dict:
    """Eight 720p JPEGs of a smooth picture: small to send, seconds of work."""
    rows, cols = np.mgrid[0:720, 0:1280]
    picture = np.stack([rows % 256, cols % 256, (rows + cols) % 256], -1).astype(np.uint8)
    return {
        "signature_name": "segment_jpeg",
        "instances": _rows([_b64(_jpeg(picture))] * 8, "jpeg"),
    }


def test_stop_answers_calls_received_and_refuses_new_ones(served_models):
    server = _start(served_models, limits=ServerOptions().limits, max_message_bytes=64 * MIB)
    url = f"http://127.0.0.1:{server.rest.port}"
    answers, stopped = [], threading.Event()
    with httpx.Client(base_url=url, timeout=180) as http:
        http.post(f"{MODEL}:predict", json={"instances": _rows(FRAME)})  # warm

        def slow():
            answers.append(http.post(f"{MODEL}:predict", json=_slow_body()))

        caller = threading.Thread(target=slow)
        caller.start()
        deadline = time.monotonic() + 60
        while server.metrics.registry.get_sample_value("rcseg_requests_in_flight") < 1:
            assert time.monotonic() < deadline and caller.is_alive()
            time.sleep(0.01)
        stopper = threading.Thread(target=lambda: (server.stop(grace=120), stopped.set()))
        stopper.start()
        while not server.gate.closed:
            assert time.monotonic() < deadline and stopper.is_alive()
            time.sleep(0.01)
        with httpx.Client(base_url=url, timeout=30) as other:
            refused = other.get(MODEL)
            metrics = other.get("/monitoring/prometheus/metrics")
        assert refused.status_code == 503
        assert refused.json() == {"error": "the server is shutting down"}
        assert metrics.status_code == 200  # still scraped while draining
        assert not stopped.is_set()
        caller.join(timeout=180)
        stopper.join(timeout=30)
    assert answers[0].status_code == 200, answers[0].text
    assert len(answers[0].json()["predictions"]) == 8
    assert stopped.is_set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{MODEL}", timeout=5)


def test_python_m_serving_serves_rest_on_the_port_asked_for(served_models):
    process = subprocess.Popen(
        [
            sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "0", "--model-name", "deeplabv3",
            "--model-base-path", str(served_models),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    try:
        for line in process.stdout:
            match = re.search(r"metrics http://[\d.]+:(\d+)/.*REST http://[\d.]+:(\d+)/", line)
            if match:
                break
        else:
            raise AssertionError(f"the server exited with {process.wait()} before listening")
        assert match.group(1) == match.group(2)  # the REST port serves the metrics page
        url = f"http://127.0.0.1:{match.group(2)}"
        assert httpx.get(f"{url}{MODEL}").json()["model_version_status"][0]["state"] == "AVAILABLE"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
