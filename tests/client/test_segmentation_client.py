"""SegmentationClient against a real embedded server, compared with the SavedModel's own output."""

from __future__ import annotations

import threading
import time

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from client import (
    VOC_CLASS_NAMES,
    InvalidFrame,
    InvalidRequest,
    ModelNotFound,
    RequestTooLarge,
    SegmentationClient,
    ServerUnavailable,
    TlsMismatch,
    wire,
)
from client.errors import ClientClosed, InvalidResponse, SignatureMismatch
from client.stream import LatestFrameSource, SegmentationStream
from tests.helpers import call_signature, free_port, self_signed_certificate


@pytest.fixture(scope="module")
def frame_bgr(synth_root) -> np.ndarray:
    """A real JPEG from disk as OpenCV gives it: H×W×3 BGR."""
    path = sorted((synth_root / "JPEGImages").glob("*.jpg"))[0]
    return cv2.imread(str(path))


def reference(saved_model, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """What the SavedModel's serving_default answers for one RGB frame."""
    outputs = call_signature(saved_model.signatures["serving_default"], images=rgb[np.newaxis])
    return {name: value.numpy()[0] for name, value in outputs.items()}


def test_raw_frames_match_the_saved_model(target, saved_model, frame_bgr):
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    expected = reference(saved_model, rgb)
    with SegmentationClient(target) as client:
        result = client.segment(frame_bgr, confidence=True)
    np.testing.assert_array_equal(result.class_map, expected["class_map"])
    np.testing.assert_array_equal(result.confidence, expected["confidence"])
    assert result.class_map.shape == frame_bgr.shape[:2] and result.class_map.dtype == np.uint8
    assert result.model_version == 1
    assert result.request_bytes > frame_bgr.nbytes  # the pixels, as one buffer, plus framing
    assert result.response_bytes > 2 * frame_bgr.shape[0] * frame_bgr.shape[1]
    assert min(result.timings.encode, result.timings.rpc, result.timings.decode) > 0


def test_color_order_is_converted_for_bgr_and_kept_for_rgb(target, saved_model, frame_bgr):
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    as_rgb, swapped = reference(saved_model, rgb), reference(saved_model, frame_bgr)
    # The check below can only fail if the model tells the two channel orders apart.
    assert not np.array_equal(as_rgb["confidence"], swapped["confidence"])
    with SegmentationClient(target) as client:
        from_bgr = client.segment(frame_bgr, color="bgr", confidence=True)
        from_rgb = client.segment(rgb, color="rgb", confidence=True)
        mislabelled = client.segment(frame_bgr, color="rgb", confidence=True)
    np.testing.assert_array_equal(from_bgr.confidence, as_rgb["confidence"])
    np.testing.assert_array_equal(from_rgb.confidence, as_rgb["confidence"])
    np.testing.assert_array_equal(mislabelled.confidence, swapped["confidence"])
    assert from_bgr.confidence is not None and from_bgr.class_map.flags.c_contiguous


def test_jpeg_transport_matches_the_saved_model_on_the_same_bytes(target, saved_model, frame_bgr):
    ok, jpeg = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    expected = call_signature(
        saved_model.signatures["segment_jpeg"], jpeg=np.array([jpeg.tobytes()])
    )
    with SegmentationClient(target, transport="jpeg", jpeg_quality=80) as client:
        result = client.segment(frame_bgr, confidence=True)
        rgb_result = client.segment(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), color="rgb")
    np.testing.assert_array_equal(result.class_map, expected["class_map"].numpy()[0])
    np.testing.assert_array_equal(result.confidence, expected["confidence"].numpy()[0])
    np.testing.assert_array_equal(rgb_result.class_map, result.class_map)
    assert result.request_bytes < frame_bgr.nbytes / 4  # the point of the JPEG transport


@pytest.mark.parametrize("transport", ["raw", "jpeg"])
def test_output_size_gives_the_maps_at_the_planners_size(target, saved_model, frame_bgr, transport):
    height, width = frame_bgr.shape[0] // 4, frame_bgr.shape[1] // 4
    with SegmentationClient(target, transport=transport) as full_size:
        full = full_size.segment(frame_bgr, confidence=True)
    with SegmentationClient(target, transport=transport, output_size=(height, width)) as client:
        small = client.segment(frame_bgr, confidence=True)
    assert small.class_map.shape == small.confidence.shape == (height, width)
    assert small.response_bytes < full.response_bytes / 10  # 1/16 of the pixels
    if transport == "raw":  # the signature's answer at that size, through the real server
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        expected = saved_model.signatures["serving_default"](
            images=rgb[np.newaxis], output_size=[[height, width]]
        )
        np.testing.assert_array_equal(small.class_map, expected["class_map"].numpy()[0])


def test_a_bad_output_size_is_named_by_the_client_and_by_the_server(target, frame_bgr):
    for bad in [(0, 10), (10,), ("a", 3), 5]:
        with pytest.raises(ValueError, match="output_size"):
            SegmentationClient(target, output_size=bad)
    larger = (frame_bgr.shape[0] + 1, frame_bgr.shape[1])
    with (
        SegmentationClient(target, output_size=larger) as client,
        pytest.raises(InvalidFrame, match="larger than the frame"),
    ):
        client.segment(frame_bgr)
    # The server's own check, for a client that does not check: INVALID_ARGUMENT, named.
    channel = grpc.insecure_channel(target)
    predict = channel.unary_unary(
        wire.PREDICT_METHOD,
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=wire.pb.PredictResponse.FromString,
    )
    request = wire.predict_request(
        wire.model_spec("deeplabv3"),
        {"images": frame_bgr[None], "output_size": np.int32([larger])},
    )
    with pytest.raises(grpc.RpcError) as refused:
        predict(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_size must be [0, 0]" in refused.value.details()
    assert "for a frame of (height, width)" in refused.value.details()
    request.inputs["output_size"].CopyFrom(wire.encode_tensor(np.int32([[4, 4]])))
    assert predict(request, timeout=30).outputs["class_map"].tensor_shape.dim[1].size == 4
    channel.close()


@pytest.mark.parametrize("shape", [(37, 53), (64, 48), (1, 1), (1080, 1920)])
def test_class_map_has_the_frame_size(target, saved_model, shape):
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with SegmentationClient(target) as client:
        result = client.segment(frame, color="rgb")
    assert result.class_map.shape == shape
    np.testing.assert_array_equal(result.class_map, reference(saved_model, frame)["class_map"])


def test_real_voc_frame(target, saved_model, voc_sample):
    path = sorted((voc_sample / "JPEGImages").glob("*.jpg"))[0]
    frame = cv2.imread(str(path))
    with SegmentationClient(target, transport="jpeg") as client:
        result = client.segment(frame)
    assert result.class_map.shape == frame.shape[:2]
    assert set(np.unique(result.class_map)) <= set(range(21))


def test_metadata_and_status(target, served_models):
    with SegmentationClient(target) as client:
        metadata = client.metadata()
        statuses = client.wait_until_ready(timeout=5)
    assert metadata.class_names == VOC_CLASS_NAMES
    assert metadata.palette.shape == (21, 3) and metadata.palette[15].tolist() == [192, 128, 128]
    assert metadata.input_size == (64, 64) and metadata.output_stride == 16
    assert metadata.model_version == 1
    assert [(s.version, s.state) for s in statuses[target]] == [(1, "AVAILABLE")]


def test_async_calls_return_futures(target, saved_model, frame_bgr):
    expected = reference(saved_model, cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    with SegmentationClient(target, workers=2) as client:
        futures = [client.segment_async(frame_bgr) for _ in range(4)]
        results = [future.result(timeout=30) for future in futures]
    for result in results:
        np.testing.assert_array_equal(result.class_map, expected["class_map"])


def test_local_frame_errors_name_the_problem(target):
    with SegmentationClient(target) as client:
        with pytest.raises(InvalidFrame, match=r"H×W×3.*\(10, 10\)"):
            client.segment(np.zeros((10, 10), np.uint8))
        with pytest.raises(InvalidFrame, match="uint8, got float32"):
            client.segment(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(InvalidFrame, match="numpy array, got list"):
            client.segment([[0, 0, 0]])
        with pytest.raises(InvalidFrame, match="color"):
            client.segment(np.zeros((4, 4, 3), np.uint8), color="hsv")


def test_server_errors_become_client_errors_with_the_servers_message(target):
    frame = np.zeros((8, 8, 3), np.uint8)
    with SegmentationClient(target, model="nope") as client:
        with pytest.raises(ModelNotFound, match=r"NOT_FOUND.*nope") as caught:
            client.segment(frame)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND and caught.value.target == target
    with SegmentationClient(target, version=7) as client, pytest.raises(ModelNotFound, match="7"):
        client.segment(frame)
    with SegmentationClient(target) as client:
        too_many_pixels = np.zeros((1100, 2000, 3), np.uint8)
        with pytest.raises(InvalidRequest, match=r"INVALID_ARGUMENT.*pixels"):
            client.segment(too_many_pixels)
        with pytest.raises(SignatureMismatch, match=r"FAILED_PRECONDITION.*no_such_signature"):
            client.predict({"images": frame[np.newaxis]}, signature="no_such_signature")
    small = [("grpc.max_send_message_length", 1000)]
    with (
        SegmentationClient(target, options=small) as client,
        pytest.raises(RequestTooLarge, match="RESOURCE_EXHAUSTED"),
    ):
        client.segment(np.zeros((100, 100, 3), np.uint8))


def test_unreachable_server_is_retried_until_the_deadline():
    with SegmentationClient(f"127.0.0.1:{free_port()}", timeout=0.8) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"127\.0\.0\.1:\d+: UNAVAILABLE"):
            client.segment(np.zeros((8, 8, 3), np.uint8))
        assert 0.7 < time.monotonic() - started < 3
        with pytest.raises(ServerUnavailable, match=r"not available .* after 0.5 s"):
            client.wait_until_ready(timeout=0.5)


def test_a_server_that_comes_up_within_the_deadline_answers(start_server, frame_bgr):
    port = free_port()
    with SegmentationClient(f"127.0.0.1:{port}", timeout=60) as client:
        future = client.segment_async(frame_bgr)
        time.sleep(1.0)  # the first attempts fail: nothing listens yet
        assert not future.done()
        start_server(port=port)
        assert future.result(timeout=60).class_map.shape == frame_bgr.shape[:2]
        assert client.wait_until_ready(timeout=5)


def _answered(server) -> int:
    """Predict calls the server answered OK (its own metrics)."""
    labels = {"method": "Predict", "model": "deeplabv3", "signature": "serving_default"}
    sample = server.metrics.registry.get_sample_value(
        "rcseg_requests_total", {**labels, "code": "OK"}
    )
    return int(sample or 0)


def test_three_servers_share_a_stream_and_one_stopping_fails_no_frame(start_server, frame_bgr):
    """gRPC's round_robin over an ``ipv4:`` target: calls spread over the three servers; one
    stopped mid-stream (health NOT_SERVING, then draining) costs no frame."""
    servers = [start_server() for _ in range(3)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in servers)
    before = [_answered(server) for server in servers]
    frames = [frame_bgr] * 60
    with (
        SegmentationClient(target, timeout=30) as client,
        LatestFrameSource(frames, latest_only=False) as source,
    ):
        client.wait_until_ready(timeout=10)
        stream = SegmentationStream(client, source, max_in_flight=3)
        results, stopper = [], None
        for result in stream:
            results.append(result)
            if len(results) == 20:  # stop one server mid-stream, with calls in flight
                stopper = threading.Thread(target=servers[1].stop, kwargs={"grace": 5.0})
                stopper.start()
        stopper.join()
    spread = [_answered(server) - first for server, first in zip(servers, before, strict=True)]
    print(f"60 frames over three servers, the second stopped after 20: {spread}")
    assert [r.error for r in results if not r.ok] == []
    assert len(results) == 60 and sum(spread) == 60
    assert all(count >= 5 for count in spread), spread  # every server took its share
    assert spread[1] < min(spread[0], spread[2])  # the stopped one took none after stopping


def test_health_watches_of_many_clients_hold_no_request_thread(start_server, frame_bgr):
    """Each client channel watches each server's health (a stream per connection): more
    clients than the server's request threads must still be answered, and the watches must
    not hold up a shutdown."""
    server = start_server(workers=2)
    clients = [SegmentationClient(f"127.0.0.1:{server.port}", timeout=10) for _ in range(6)]
    try:
        for client in clients:
            assert client.segment(frame_bgr).class_map.shape == frame_bgr.shape[:2]
        started = time.monotonic()
        server.stop(grace=5.0)
        assert time.monotonic() - started < 3  # the drain waited for no watch
    finally:
        for client in clients:
            client.close()


def test_a_dns_target_and_a_list_of_names_reach_the_server(target, frame_bgr):
    port = target.rsplit(":", 1)[1]
    for form in (f"dns:///localhost:{port}", [f"localhost:{port}", f"127.0.0.1:{port}"]):
        with SegmentationClient(form) as client:
            assert client.segment(frame_bgr).class_map.shape == frame_bgr.shape[:2]
    with SegmentationClient([f"localhost:{port}", target]) as pair:
        assert pair.target == f"ipv4:127.0.0.1:{port},{target}"


def test_tls_and_a_mismatch_named_at_once(start_server, target, frame_bgr, tmp_path):
    key, cert = self_signed_certificate(tmp_path)
    server = start_server(tls_cert=cert, tls_key=key)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with SegmentationClient(f"localhost:{server.port}", credentials=credentials) as client:
        assert client.segment(frame_bgr).class_map.shape == frame_bgr.shape[:2]
    (tmp_path / "other").mkdir()
    _, other = self_signed_certificate(tmp_path / "other")
    untrusted = grpc.ssl_channel_credentials(root_certificates=other.read_bytes())
    for client, words in [
        (SegmentationClient(f"localhost:{server.port}"), "speaks TLS and this client sends plain"),
        (SegmentationClient(target, credentials=credentials), "answers in plain text, not TLS"),
        (
            SegmentationClient(f"localhost:{server.port}", credentials=untrusted),
            "certificate is not signed by the CA",
        ),
    ]:
        with client:
            started = time.monotonic()
            with pytest.raises(TlsMismatch, match=words):  # its 10 s deadline: no retries
                client.segment(frame_bgr)
            with pytest.raises(TlsMismatch, match=words):
                client.wait_until_ready(timeout=10)
            # gRPC's own retries (at most 5 attempts) come first; not the 10 s deadline.
            assert time.monotonic() - started < 5
    # One target with a mismatch among others that answer: it is skipped, nothing fails.
    with SegmentationClient([f"localhost:{server.port}", target]) as pair:
        for _ in range(4):
            assert pair.segment(frame_bgr).class_map.shape == frame_bgr.shape[:2]


def test_connect_timeout_bounds_the_wait_for_a_server_that_is_down(frame_bgr):
    dead = f"127.0.0.1:{free_port()}"
    with SegmentationClient(dead, timeout=30, connect_timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match=dead.replace(".", r"\.")):
            client.segment(frame_bgr)
        assert 0.4 < time.monotonic() - started < 2


def test_concurrent_segment_calls_from_threads(target, frame_bgr):
    errors = []

    def work(client):
        try:
            for _ in range(3):
                client.segment(frame_bgr)
        except Exception as error:  # collected, asserted below
            errors.append(error)

    with SegmentationClient(target) as client:
        threads = [threading.Thread(target=work, args=(client,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


class _GarbageAnswers(grpc.GenericRpcHandler):
    """A real gRPC server on TF Serving's method paths that answers bytes no protobuf parses
    (its health service says SERVING: the client's channel checks it before using a server)."""

    def service(self, handler_call_details):
        method = handler_call_details.method
        serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        health = dict(
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
        if method == "/grpc.health.v1.Health/Check":
            return grpc.unary_unary_rpc_method_handler(lambda request, context: serving, **health)
        if method == "/grpc.health.v1.Health/Watch":
            return grpc.unary_stream_rpc_method_handler(self._watch, **health)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"\xff\xff\xff")

    @staticmethod
    def _watch(request, context):
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        while context.is_active():
            time.sleep(0.05)


def test_an_answer_that_is_not_a_predict_response_is_invalid_response(frame_bgr):
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[_GarbageAnswers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with SegmentationClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(InvalidResponse, match="not a PredictResponse"):
                client.segment(frame_bgr)
            with pytest.raises(InvalidResponse, match="not a GetModelStatusResponse"):
                client.wait_until_ready(timeout=2)
    finally:
        server.stop(0)


def test_a_closed_client_refuses_calls(target, frame_bgr):
    client = SegmentationClient(target)
    client.close()
    with pytest.raises(ClientClosed):
        client.segment(frame_bgr)
    with pytest.raises(ClientClosed):
        client.segment_async(frame_bgr)


def test_closing_ends_calls_waiting_to_retry(frame_bgr):
    client = SegmentationClient(f"127.0.0.1:{free_port()}", timeout=60)
    future = client.segment_async(frame_bgr)
    time.sleep(0.3)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 5  # not the 60 s deadline
    with pytest.raises(ClientClosed):
        future.result(timeout=1)


def test_a_server_that_is_down_costs_the_others_no_time(server, target, frame_bgr):
    dead = f"127.0.0.1:{free_port()}"
    with SegmentationClient(target) as alone, SegmentationClient([target, dead]) as pair:
        alone.segment(frame_bgr)
        pair.segment(frame_bgr)
        single = [alone.segment(frame_bgr).timings.total for _ in range(6)]
        started = time.monotonic()
        for _ in range(6):
            pair.segment(frame_bgr)
        paired = (time.monotonic() - started) / 6
        # round_robin sends calls only to servers it is connected to: never to the dead one.
        assert paired < 2 * max(single) + 0.05
        assert pair.wait_until_ready(timeout=5) == {pair.target: pair.model_status()[pair.target]}


def test_errors_that_waiting_cannot_fix_are_raised_at_once(target):
    with SegmentationClient(target, version="no-such-label") as client:
        started = time.monotonic()
        with pytest.raises(InvalidRequest, match="no-such-label"):
            client.wait_until_ready(timeout=30)
        assert time.monotonic() - started < 5
