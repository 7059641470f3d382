"""The embedded server answered through TF Serving's official stubs, on 127.0.0.1."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import urllib.error
import urllib.request

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from client import contract
from serving.metrics import METRICS_PATH
from tests.helpers import copy_version

STATE = get_model_status_pb2.ModelVersionStatus.State


def _request(images: np.ndarray | None = None, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", "deeplabv3")
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if images is not None:
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def _frames(n=1, h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _jpeg(frame: np.ndarray, extension=".jpg") -> bytes:
    return cv2.imencode(extension, frame[..., ::-1])[1].tobytes()


@pytest.fixture
def predict(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request)
    return raised.value


# --- answers ---------------------------------------------------------------------------------


def test_predict_raw_frames_returns_uint8_maps_as_tensor_content_and_echoes_the_version(predict):
    response = predict(_request(_frames(2, 37, 53)))
    assert response.model_spec.name == "deeplabv3"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    for name in ("class_map", "confidence"):
        proto = response.outputs[name]
        assert proto.dtype == tf.uint8.as_datatype_enum
        assert [d.size for d in proto.tensor_shape.dim] == [2, 37, 53]
        assert len(proto.tensor_content) == 2 * 37 * 53 and not proto.int_val
    assert tf.make_ndarray(response.outputs["class_map"]).max() < 21


def test_output_filter_returns_only_what_was_asked(predict):
    request = _request(_frames())
    whole = predict(request)
    request.output_filter.append("class_map")
    alone = predict(request)
    assert list(alone.outputs) == ["class_map"]
    assert alone.outputs["class_map"] == whole.outputs["class_map"]  # from a pruned function
    request.output_filter[:] = ["logits"]
    error = _error(predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: logits" in error.details()


def test_segment_jpeg_answers_jpeg_and_png_bytes_at_their_size(predict):
    frame = _frames(1, 60, 80)[0]
    for data in (_jpeg(frame), _jpeg(frame, ".png")):
        request = _request(signature_name="segment_jpeg")
        request.inputs["jpeg"].CopyFrom(tf.make_tensor_proto([data]))
        response = predict(request)
        assert tf.make_ndarray(response.outputs["class_map"]).shape == (1, 60, 80)
    png = _request(signature_name="segment_jpeg")
    png.inputs["jpeg"].CopyFrom(tf.make_tensor_proto([_jpeg(frame, ".png")]))
    raw = predict(_request(frame[None]))
    np.testing.assert_array_equal(
        tf.make_ndarray(predict(png).outputs["class_map"]),
        tf.make_ndarray(raw.outputs["class_map"]),
    )


def _mpo(frame: np.ndarray) -> bytes:
    """A multi-picture JPEG (MPO, what phone cameras write): ``frame``, then a smaller one."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    second = Image.new("RGB", (frame.shape[1] // 2, frame.shape[0] // 2))
    Image.fromarray(frame).save(buffer, format="MPO", save_all=True, append_images=[second])
    return buffer.getvalue()


def test_a_multi_picture_jpeg_is_segmented_as_its_first_picture(predict):
    frame = _frames(1, 60, 80)[0]
    request = _request(signature_name="segment_jpeg")
    request.inputs["jpeg"].CopyFrom(tf.make_tensor_proto([_mpo(frame)]))
    assert tf.make_ndarray(predict(request).outputs["class_map"]).shape == (1, 60, 80)


def test_metadata_signature_answers_without_inputs(predict):
    response = predict(_request(signature_name="metadata"))
    names = tf.make_ndarray(response.outputs["class_names"])
    assert names.shape == (1, 21) and names[0][15] == b"person"
    assert tf.make_ndarray(response.outputs["input_size"]).tolist() == [[64, 64]]


def test_get_model_metadata_gives_the_signature_defs(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "deeplabv3"
    response = stub.GetModelMetadata(request)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "segment_jpeg", "metadata"}
    serving_default = signatures.signature_def["serving_default"]
    assert sorted(serving_default.inputs) == ["images", "output_size"]
    assert list(serving_default.defaults) == ["output_size"]  # optional: the frame's size
    del request.metadata_field[:]
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModelMetadata(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one metadata_field" in raised.value.details()


def test_model_status_and_health(channel):
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "deeplabv3"
    (version,) = status(request).model_version_status
    assert (version.version, version.state) == (1, STATE.AVAILABLE)
    request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as raised:
        status(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


# --- errors ----------------------------------------------------------------------------------


def _with_input(name: str, proto) -> predict_pb2.PredictRequest:
    request = _request()
    request.inputs[name].CopyFrom(proto)
    return request


def _declared_only(shape):
    proto = tf.make_tensor_proto(np.zeros((1, 1, 1, 3), np.uint8))
    proto.tensor_content = b""
    del proto.tensor_shape.dim[:]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _truncated_content():
    proto = tf.make_tensor_proto(_frames())
    proto.tensor_content = proto.tensor_content[:-10]
    return proto


BAD_REQUESTS = {
    "float frames": (
        lambda: _request(_frames().astype(np.float32)),
        "input images: expected dtype DT_UINT8, got DT_FLOAT",
    ),
    "one frame without batch axis": (
        lambda: _request(_frames()[0]),
        "input images: expected rank 4 [?,?,?,3], got shape [48, 64, 3]",
    ),
    "RGBA": (
        lambda: _request(np.zeros((1, 8, 8, 4), np.uint8)),
        "input images: dimension 3 must be 3 (RGB channels)",
    ),
    "empty": (lambda: _request(np.zeros((0, 8, 8, 3), np.uint8)), "input images: empty tensor"),
    "batch over the limit": (
        lambda: _request(np.zeros((5, 8, 8, 3), np.uint8)),
        "a batch of 5 exceeds this server's limit of 4",
    ),
    "too many pixels": (
        lambda: _request(np.zeros((1, 1000, 1600, 3), np.uint8)),
        "1,600,000 pixels in one request exceed this server's limit of 1,500,000",
    ),
    "a huge shape declared with no content": (
        lambda: _with_input("images", _declared_only([4, 20000, 20000, 3])),
        "1,600,000,000 pixels in one request exceed this server's limit of 1,500,000",
    ),
    "short tensor_content": (
        lambda: _with_input("images", _truncated_content()),
        "input images: content does not match shape [1, 48, 64, 3]",
    ),
    "missing input": (
        lambda: _request(),
        "input size does not match signature: 0!=2 len({}) != len({images,output_size}). "
        "Sent extra: {}. Missing but required: {images}.",  # output_size has a default
    ),
    "extra input": (
        lambda: (
            _with_input("mask", tf.make_tensor_proto(np.zeros(3, np.uint8)))
            if False
            else _request_with_extra()
        ),
        "Sent extra: {mask}",
    ),
    "a PNG header declaring 20000×20000": (
        lambda: _jpeg_request([_png_header(20000, 20000)]),
        "its header declares more pixels than this server accepts",
    ),
    "a GIF": (
        lambda: _jpeg_request([_gif()]),
        "not a decodable JPEG or PNG image",
    ),
    "bytes that are no image": (
        lambda: _jpeg_request([b"hello, not a JPEG"]),
        "input jpeg[0]: not a decodable JPEG or PNG image (17 bytes",
    ),
    "a JPEG cut short": (  # the header reads; TensorFlow's decoder reports the rest
        lambda: _jpeg_request([_half_jpeg()]),
        "Invalid JPEG data",
    ),
    "a uint8 int_val over 255": (
        lambda: _with_input("images", _int_vals([1, 2, 2, 3], [300] * 12)),
        "input images: a value does not fit DT_UINT8",
    ),
    "no model_spec": (lambda: predict_pb2.PredictRequest(), "Missing ModelSpec"),
    "an empty model name": (lambda: _request(_frames(), name=""), "ModelSpec has no name"),
    "JPEGs of two sizes": (
        lambda: _jpeg_request([_jpeg(_frames(1, 60, 80)[0]), _jpeg(_frames(1, 40, 80)[0])]),
        "must have the same size",
    ),
}


def _half_jpeg() -> bytes:
    data = _jpeg(_frames(1, 60, 80)[0])
    return data[: len(data) // 2]


def _int_vals(shape, values):
    proto = tf.make_tensor_proto(np.zeros(shape, np.uint8))
    proto.tensor_content = b""
    proto.int_val.extend(values)
    return proto


def _png_header(width: int, height: int) -> bytes:
    """A PNG with an IHDR chunk and no pixels: what a decompression bomb starts with."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _gif() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def _request_with_extra():
    request = _request(_frames())
    request.inputs["mask"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.uint8)))
    return request


def _jpeg_request(blobs):
    request = _request(signature_name="segment_jpeg")
    request.inputs["jpeg"].CopyFrom(tf.make_tensor_proto(blobs))
    return request


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_invalid_argument_naming_the_problem_and_the_server_keeps_answering(
    predict, case
):
    make, message = BAD_REQUESTS[case]
    error = _error(predict, make())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert message in error.details()
    assert predict(_request(_frames())).model_spec.version.value == 1


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            {"name": "nope"},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        ({"version": 7}, grpc.StatusCode.NOT_FOUND, "Specific(deeplabv3, 7)"),
        ({"version_label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT, "version label: canary"),
        (
            {"signature_name": "classify"},
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "classify" not found.',
        ),
    ],
)
def test_unknown_model_version_label_and_signature(predict, spec, code, message):
    error = _error(predict, _request(_frames(), **spec))
    assert error.code() == code and message in error.details()


def test_tensorflow_errors_reach_the_client_without_graph_internals(predict):
    error = _error(predict, _jpeg_request([_half_jpeg()]))
    assert error.details() == "jpeg::Uncompress failed. Invalid JPEG data or crop window."


def test_names_a_client_sends_are_echoed_bounded(predict, channel):
    long = "s" * 100_000
    for request, code in [
        (_request(_frames(), signature_name=long), grpc.StatusCode.FAILED_PRECONDITION),
        (_request(_frames(), name=long), grpc.StatusCode.NOT_FOUND),
        (_request(_frames(), version_label=long), grpc.StatusCode.INVALID_ARGUMENT),
        # 4 bytes each, up to 12 once percent-encoded: escaped to ASCII, then bounded.
        (_request(_frames(), signature_name="🙂" * 25_000), grpc.StatusCode.FAILED_PRECONDITION),
    ]:
        error = _error(predict, request)
        assert error.code() == code and "characters)" in error.details()
        assert len(error.details()) < 300 and error.details().isascii()
    many = _request(_frames())
    for index in range(5000):
        many.inputs[f"extra_{index:05}_{'x' * 50}"].CopyFrom(tf.make_tensor_proto(np.uint8(0)))
    error = _error(predict, many)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "... 4990 more" in error.details()
    assert len(error.details()) <= 2000 + 40
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
    request = get_model_status_pb2.GetModelStatusRequest()
    assert _error(status, request).details() == "Missing ModelSpec"


def test_classify_regress_and_multi_inference_are_unimplemented(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    error = _error(stub.Classify, classification_pb2.ClassificationRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED and "Predict" in error.details()


# --- versions --------------------------------------------------------------------------------


def test_hot_reload_moves_traffic_to_a_new_version_without_failed_requests(
    server, predict, base_path, exported_version
):
    versions, failures, stop = [], [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                versions.append(predict(_request(_frames())).model_spec.version.value)
            except grpc.RpcError as error:  # pragma: no cover - the assertion reports it
                failures.append(error.details())

    client = threading.Thread(target=loop)
    client.start()
    time.sleep(0.5)
    copy_version(exported_version, base_path, 2)
    deadline = time.monotonic() + 60
    while (not versions or versions[-1] != 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    client.join()
    assert not failures
    assert versions[0] == 1 and versions[-1] == 2
    assert versions == sorted(versions)  # once on 2, never back to 1
    statuses = _statuses(server)
    deadline = time.monotonic() + 10
    while statuses.get(1) != "END" and time.monotonic() < deadline:
        time.sleep(0.1)
        statuses = _statuses(server)
    assert statuses == {1: "END", 2: "AVAILABLE"}  # the old version unloaded


def _statuses(server) -> dict[int, str]:
    return {s.version: s.state for s in server.manager.versions("deeplabv3")}


def test_a_broken_version_is_reported_and_the_old_one_keeps_serving(
    server, predict, channel, base_path
):
    broken = base_path / ".broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    broken.rename(base_path / "2")
    deadline = time.monotonic() + 30
    while 2 not in _statuses(server) or _statuses(server)[2] == "LOADING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (failed,) = [s for s in server.manager.versions("deeplabv3") if s.version == 2]
    assert (failed.state == "END" and "saved_model.pb" in failed.error) or failed.error
    time.sleep(0.5)  # a few more scans: the failed version is not retried, 1 stays
    assert predict(_request(_frames())).model_spec.version.value == 1
    assert _statuses(server) == {1: "AVAILABLE", 2: "END"}
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "deeplabv3"
    request.model_spec.version.value = 2
    (reported,) = status(request).model_version_status
    assert reported.state == STATE.END and "DecodeError" in reported.status.error_message


def _broken_version(base_path, version: int) -> None:
    """A version folder whose saved_model.pb is garbage (a half-written or corrupt export)."""
    broken = base_path / f".broken-{version}"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(np.random.default_rng(version).bytes(4096))
    broken.rename(base_path / str(version))


def _health(channel) -> dict[str, int]:
    check = health_pb2_grpc.HealthStub(channel).Check
    services = ("", "tensorflow.serving.PredictionService")
    return {s: check(health_pb2.HealthCheckRequest(service=s)).status for s in services}


@pytest.fixture
def start_server():
    """Starts embedded servers on base paths as they are now; stops them after the test."""
    from serving.model_config import single_model
    from serving.options import ServerOptions
    from serving.server import EmbeddedServer

    started = []

    def start(base_path):
        options = ServerOptions(host="127.0.0.1", port=0, poll_seconds=0.2)
        server = EmbeddedServer([single_model("deeplabv3", base_path)], options)
        server.start()
        started.append(server)
        return server, grpc.insecure_channel(f"127.0.0.1:{server.port}")

    yield start
    for server in started:
        server.stop(grace=0.5)


def test_a_restart_with_a_broken_newest_version_serves_the_newest_that_loads(
    base_path, exported_version, start_server
):
    copy_version(exported_version, base_path, 2)
    _broken_version(base_path, 3)
    server, channel = start_server(base_path)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
    assert predict(_request(_frames())).model_spec.version.value == 2
    assert _statuses(server) == {2: "AVAILABLE", 3: "END"}
    assert "DecodeError" in server.manager.versions("deeplabv3", 3)[0].error
    assert set(_health(channel).values()) == {health_pb2.HealthCheckResponse.SERVING}
    # Once version 3 is fixed (its folder changes), it is loaded and 2 leaves.
    fixed = base_path / ".fixed"
    shutil.copytree(exported_version, fixed)
    shutil.rmtree(base_path / "3")
    fixed.rename(base_path / "3")
    deadline = time.monotonic() + 60
    while predict(_request(_frames())).model_spec.version.value != 3:
        assert time.monotonic() < deadline, _statuses(server)
        time.sleep(0.2)


def test_health_is_not_serving_while_no_version_loads(tmp_path, exported_version, start_server):
    base_path = tmp_path / "deeplabv3"
    base_path.mkdir()
    _broken_version(base_path, 1)
    server, channel = start_server(base_path)
    assert set(_health(channel).values()) == {health_pb2.HealthCheckResponse.NOT_SERVING}
    error = _error(prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict, _request())
    assert error.code() == grpc.StatusCode.NOT_FOUND
    copy_version(exported_version, base_path, 2)
    deadline = time.monotonic() + 60
    while set(_health(channel).values()) != {health_pb2.HealthCheckResponse.SERVING}:
        assert time.monotonic() < deadline, _statuses(server)
        time.sleep(0.2)
    assert _statuses(server) == {1: "END", 2: "AVAILABLE"}


def test_metrics_count_requests_by_code_at_tf_servings_path(server, predict):
    predict(_request(_frames()))
    _error(predict, _request(_frames(), name="nope"))
    port = server.metrics_http.server_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}{METRICS_PATH}").read().decode()
    assert (
        'rcseg_requests_total{code="OK",method="Predict",model="deeplabv3",'
        'signature="serving_default"} 1.0' in text
    )
    assert 'code="NOT_FOUND",method="Predict",model="(unknown)"' in text
    assert 'rcseg_model_version_state{model="deeplabv3",state="AVAILABLE",version="1"} 1.0' in text
    assert "rcseg_request_latency_seconds_bucket" in text and "rcseg_model_load_seconds" in text
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics")


def test_a_subset_of_outputs_runs_a_pruned_function_of_the_signature(exported_version):
    from serving.servable import load_version

    version = load_version("deeplabv3", 1, exported_version)
    signature = version.signatures["serving_default"]
    assert version.outputs_of("serving_default", ["confidence", "class_map"]) is signature
    alone = version.outputs_of("serving_default", ["class_map"])
    assert version.outputs_of("serving_default", ["class_map"]) is alone  # cached
    default = contract.INPUT_DEFAULTS[contract.OUTPUT_SIZE]
    for frames in (_frames(1, 48, 64), _frames(2, 30, 40)):
        answer = alone(images=frames, output_size=default)
        assert list(answer) == ["class_map"]
        whole = signature(images=frames, output_size=default)
        np.testing.assert_array_equal(answer["class_map"], whole["class_map"])
    assert alone.function.experimental_get_tracing_count() == 1  # one trace for any size
    with pytest.raises(ValueError, match="serving_default has no output logits"):
        version.outputs_of("serving_default", ["class_map", "logits"])
    # It keeps the loaded model's variables alive on its own.
    kept = load_version("deeplabv3", 1, exported_version).outputs_of(
        "serving_default", ["class_map"]
    )
    gc.collect()
    assert kept(images=_frames(), output_size=default)["class_map"].shape == (1, 48, 64)


def test_a_stopping_server_turns_new_calls_away_and_still_answers_health(server, predict, channel):
    assert predict(_request(_frames())).model_spec.version.value == 1
    assert server.pool.calls.wait_idle(timeout=1)  # the answered call left the count
    server.gate.close()  # what stop() does first, before it waits for the calls received
    error = _error(predict, _request(_frames()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the server is shutting down"
    assert set(_health(channel).values()) == {health_pb2.HealthCheckResponse.SERVING}


def test_in_flight_counts_and_waits():
    from serving.servable import InFlight

    requests = InFlight()
    with requests.track():
        assert requests.active == 1 and not requests.wait_idle(timeout=0.01)
    assert requests.active == 0 and requests.wait_idle(timeout=0)
