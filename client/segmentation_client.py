"""`SegmentationClient`: camera frames in, per-pixel class maps out, over TF Serving's gRPC API.

It speaks to TensorFlow Serving and to the embedded server alike, without TensorFlow:

    with SegmentationClient("robot-server:8500") as client:
        client.wait_until_ready(timeout=30)
        names = client.metadata().class_names
        result = client.segment(frame_bgr)           # an OpenCV frame, H×W×3 uint8 BGR
        result.class_map                              # H×W uint8 VOC ids, the frame's size
        result.timings.rpc                            # seconds on the wire and in the server

``transport="raw"`` sends the pixels (``serving_default``, best on a LAN); ``"jpeg"`` sends a
JPEG (``segment_jpeg``, ~10× fewer bytes over Wi-Fi, at some cost in encoding and accuracy).
Several servers (``"dns:///model-server-grpc:8500"``, ``"ipv4:10.0.0.5:8500,10.0.0.6:8500"``
or a list of ``HOST:PORT``) share one channel on gRPC's own ``round_robin``, health checks and
retries (``client.channel``).

The result types (``Segmentation``, ``ModelMetadata``, ``StageTimings``, ``VersionStatus``) live
in ``client.results`` and are re-exported here.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import cv2
import grpc
import numpy as np
from google.protobuf.message import DecodeError

from client import contract, diagnosis, wire
from client.channel import (
    DEFAULT_RETRY,
    RetryPolicy,
    channel_options,
    channel_target,
)
from client.errors import (
    ClientClosed,
    ClientError,
    InvalidFrame,
    InvalidResponse,
    ServerUnavailable,
    TlsMismatch,
    from_rpc_error,
)
from client.palette import ColorOrder
from client.proto import serving_wire_pb2 as pb
from client.results import ModelMetadata, Segmentation, StageTimings, VersionStatus

Transport = Literal["raw", "jpeg"]

# Codes worth waiting out in wait_until_ready: the server is starting or the model loading.
# Anything else (a bad version label, no such signature) will not clear by itself.
_NOT_READY_YET = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND}
# How long a call that ran out of time asks whether any server is reachable at all (a refused
# or established connection answers in milliseconds; no answer at all means unreachable).
_REACHABLE_SECONDS = 0.1
# How often gRPC Python's connectivity thread wakes (grpc/_channel.py, _poll_connectivity).
_CONNECTIVITY_POLL_SECONDS = 0.25
# An attempt with less time than this left would only end in DEADLINE_EXCEEDED.
_MIN_ATTEMPT_SECONDS = 0.01

TRANSPORTS: dict[str, contract.Signature] = {
    "raw": contract.SEGMENT,
    "jpeg": contract.SEGMENT_JPEG,
}
"""How frames travel, and the signature each way calls (its one input takes the frame)."""
DEFAULT_TRANSPORT: Transport = "raw"
DEFAULT_JPEG_QUALITY = 90
"""OpenCV's JPEG quality (0..100) for ``transport="jpeg"``."""


def _identity(data: bytes) -> bytes:
    return data


def _parse(message_type, data: bytes, what: str):
    try:
        return message_type.FromString(data)
    except DecodeError as error:
        raise InvalidResponse(f"the server's answer is not a {what}: {error}") from None


def _ask(channel: grpc.Channel, timeout: float) -> str | None:
    """Why ``channel`` reaches no server, from a health check that fails fast (it is in no
    retry policy); None if a server answered (TF Serving, which has no health service, says
    UNIMPLEMENTED)."""
    check = channel.unary_unary(
        wire.HEALTH_CHECK_METHOD, request_serializer=_identity, response_deserializer=_identity
    )
    try:
        check(b"", timeout=timeout, wait_for_ready=False)  # service "": zero bytes
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return error.details() or error.code().name
    return None


def check_frame(frame: object, color: str) -> None:
    """Raises InvalidFrame unless ``frame`` is an H×W×3 uint8 array and ``color`` an order we
    know (the onboard segmenter checks frames the same way)."""
    if color not in ("bgr", "rgb"):
        raise InvalidFrame(f'color must be "bgr" or "rgb", got {color!r}')
    if not isinstance(frame, np.ndarray):
        raise InvalidFrame(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InvalidFrame(f"frame dtype must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidFrame(f"frame must be H×W×3 with H, W > 0, got shape {frame.shape}")


def check_output_size(output_size: object) -> tuple[int, int] | None:
    """``output_size`` as (height, width) of positive ints, or None (maps at the frame's size);
    ValueError naming what came otherwise."""
    if output_size is None:
        return None
    try:
        height, width = (operator.index(v) for v in output_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"output_size must be (height, width) in pixels or None, got {output_size!r}"
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"output_size must be at least 1×1 pixels, got {height}×{width}")
    return height, width


def map_size(frame_size: tuple[int, int], output_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size the maps of a ``frame_size`` frame come at: ``output_size``, which the servers
    refuse larger than the frame (InvalidFrame here, before anything is sent), or the frame's."""
    if output_size is None:
        return frame_size
    if output_size[0] > frame_size[0] or output_size[1] > frame_size[1]:
        raise InvalidFrame(
            f"output_size {output_size[0]}×{output_size[1]} is larger than the frame "
            f"({frame_size[0]}×{frame_size[1]}): the maps come at most at the frame's size"
        )
    return output_size


class SegmentationClient:
    """A client for the ``deeplabv3`` model (``contract.DEFAULT_MODEL_NAME``, or ``model``) on
    one or more servers.

    ``target`` is gRPC's (``host:8500``, ``dns:///name:8500``, ``ipv4:a:8500,b:8500``) or a
    list of ``HOST:PORT`` (``client.channel.channel_target``): one channel, calls spread
    round-robin over the servers whose health says SERVING, a call a server refuses retried
    on the next (``retry``, gRPC's ``retryPolicy``).

    ``version`` pins an integer version or a version label (``"stable"``); None follows the
    server's latest. ``timeout`` is each call's deadline in seconds, retries included.
    ``credentials`` (``grpc.ssl_channel_credentials(...)``) switches to TLS. ``options`` are
    extra gRPC channel options; they override ours. ``workers`` is how many ``segment_async``
    calls run at once (a stream keeps at most that many frames in flight). ``output_size``
    (height, width) asks for the maps at a planner's resolution (e.g. ``(120, 160)``): the
    server resizes its logits straight to it, which costs it less and sends fewer bytes than
    maps at the frame's size (exports from before the ``output_size`` input refuse it).

    While no server is ready a call waits for one (gRPC reconnects within a second of a server
    coming back) until its deadline: a vehicle rides through a server restart or a Wi-Fi gap.
    ``connect_timeout`` bounds that wait instead (a gateway answering people says 503 within
    it). Plain text against a TLS port, or the reverse, raises TlsMismatch at the first failed
    attempt, saying so (servers of the target that agree are used meanwhile).
    """

    def __init__(
        self,
        target: str | Sequence[str],
        model: str = contract.DEFAULT_MODEL_NAME,
        *,
        version: int | str | None = None,
        transport: Transport = DEFAULT_TRANSPORT,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, object]] = (),
        retry: RetryPolicy = DEFAULT_RETRY,
        workers: int = 4,
        connect_timeout: float | None = None,
        output_size: tuple[int, int] | None = None,
    ):
        if transport not in TRANSPORTS:
            choices = " or ".join(f'"{name}"' for name in TRANSPORTS)
            raise ValueError(f"transport must be {choices}, got {transport!r}")
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 0..100, got {jpeg_quality}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if connect_timeout is not None and connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive or None, got {connect_timeout}")
        self.target = channel_target(target)
        self.model = model
        self.version = version
        self.transport: Transport = transport
        self.jpeg_quality = jpeg_quality
        self.timeout = timeout
        self.retry = retry
        self.workers = workers
        self.connect_timeout = connect_timeout
        self.output_size = check_output_size(output_size)
        self._uses_tls = credentials is not None
        self._credentials = credentials
        settings = channel_options(retry, options)
        self._channel = (
            grpc.secure_channel(self.target, credentials, settings)
            if credentials is not None
            else grpc.insecure_channel(self.target, settings)
        )
        self._predict = self._method(self._channel, wire.PREDICT_METHOD)
        self._status = self._method(self._channel, wire.GET_MODEL_STATUS_METHOD)
        self._closing = threading.Event()
        self._watched = False  # watch_connectivity was called
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment")

    @staticmethod
    def _method(channel: grpc.Channel, path: str):
        # Bytes in, bytes out: the client serializes and parses itself, so the encode and
        # decode stages are timed and the message sizes are known.
        return channel.unary_unary(
            path, request_serializer=_identity, response_deserializer=_identity
        )

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel, which cancels calls in flight (they raise ClientClosed), and
        returns once the worker threads have ended."""
        self._closing.set()
        if self._watched:
            # gRPC's connectivity thread wakes every 0.2 s and raises "Cannot monitor channel
            # state: Channel closed!" if the channel closed meanwhile: once the watchers are
            # gone (call watch_connectivity's stop first), one wake-up lets it end.
            time.sleep(_CONNECTIVITY_POLL_SECONDS)
        self._channel.close()  # cancels the RPCs running on it
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SegmentationClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def watch_connectivity(
        self, callback: Callable[[grpc.ChannelConnectivity], None]
    ) -> Callable[[], None]:
        """Calls ``callback`` with the channel's state on every change, on gRPC's thread (keep
        it short), and keeps the channel connecting; returns the function that stops it. The
        channel is READY only while a server is healthy (its health checks), and
        TRANSIENT_FAILURE once none is: failover learns of a lost server this way, off the
        frames' path (``client.failover``)."""
        self._channel.subscribe(callback, try_to_connect=True)
        self._watched = True
        return lambda: self._channel.unsubscribe(callback)

    # -- calls ----------------------------------------------------------------------------

    def _spec(self, signature: str = "") -> pb.ModelSpec:
        if isinstance(self.version, str):
            return wire.model_spec(self.model, label=self.version, signature=signature)
        return wire.model_spec(self.model, version=self.version, signature=signature)

    def _call(self, method, request: bytes, timeout: float | None) -> bytes:
        """One RPC until its deadline. gRPC picks the server and retries what a server refused
        or could not take (the channel's service config). When that is not enough (no server
        up, or every one draining) the call is sent again waiting for a server to be ready
        (gRPC's wait-for-ready: it reconnects within a second of one coming back) until the
        deadline, or ``connect_timeout`` if set. A TLS mismatch is named at the first failure,
        as waiting cannot clear it; other codes raise at once."""
        if self._closing.is_set():
            raise ClientClosed("the client is closed")
        started = time.monotonic()
        deadline = started + (self.timeout if timeout is None else timeout)
        give_up = min(deadline, started + (self.connect_timeout or math.inf))
        rides_through = self.connect_timeout is None
        unavailable: ClientError | None = None
        for attempt in itertools.count(1):
            remaining = max(deadline - time.monotonic(), _MIN_ATTEMPT_SECONDS)
            try:
                wait = rides_through and unavailable is not None
                return method(request, timeout=remaining, wait_for_ready=wait)
            except grpc.RpcError as error:
                if self._closing.is_set():
                    raise ClientClosed("the client was closed during the call") from None
                code = error.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    # Out of time while no server was ready, or a slow answer?
                    raise (
                        unavailable
                        or self._unreachable(attempt)
                        or from_rpc_error(error, self.target, attempt)
                    ) from None
                failure = from_rpc_error(error, self.target, attempt)
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise failure from None
                mismatch = self._tls_mismatch(failure)
                if mismatch is not None:
                    raise mismatch from None
                unavailable = failure
            # Waiting for ready needs no pause; sent again without it (until connect_timeout),
            # the call backs off first.
            left = give_up - time.monotonic()
            if left <= _MIN_ATTEMPT_SECONDS:
                raise unavailable
            pause = 0.0 if rides_through else min(self.retry.max_backoff, left)
            if self._closing.wait(pause):
                raise ClientClosed("the client was closed while waiting to retry")
        raise AssertionError("unreachable")

    def _unreachable(self, attempts: int) -> ClientError | None:
        """ServerUnavailable if no server can be reached now (a health check that fails fast,
        with no retries), else None."""
        details = _ask(self._channel, _REACHABLE_SECONDS)
        if details is None:
            return None
        after = f" (after {attempts} attempts)" if attempts > 1 else ""
        return ServerUnavailable(
            f"{self.target}: UNAVAILABLE{after}: {details}",
            code=grpc.StatusCode.UNAVAILABLE,
            target=self.target,
        )

    def _tls_mismatch(self, failure: ClientError) -> TlsMismatch | None:
        """The error to raise if ``failure`` comes from TLS on one side only (asked anew each
        time: a server restarted with the other setting answers again). The channel reports
        only its last failure, perhaps another address's refused connection, so each address
        is also asked alone."""
        if failure.code != grpc.StatusCode.UNAVAILABLE:
            return None
        reason = diagnosis.tls_mismatch(self.target, str(failure), uses_tls=self._uses_tls)
        for name, address in diagnosis.single_addresses(self.target):
            if reason is not None:
                break
            host = name.rsplit(":", 1)[0].strip("[]")
            options = [("grpc.use_local_subchannel_pool", 1)]
            if self._credentials is None:
                channel = grpc.insecure_channel(address, options)
            else:
                options.append(("grpc.ssl_target_name_override", host))
                channel = grpc.secure_channel(address, self._credentials, options)
            with channel:
                details = _ask(channel, diagnosis.PROBE_SECONDS)
            if details is not None:
                reason = diagnosis.tls_mismatch(name, details, uses_tls=self._uses_tls)
        if reason is None:
            return None
        return TlsMismatch(reason, code=failure.code, target=self.target)

    def predict(
        self,
        inputs: dict[str, np.ndarray | Sequence[bytes]],
        *,
        signature: str = contract.SEGMENT.name,
        outputs: Sequence[str] = (),
        timeout: float | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """A plain Predict call on any signature: outputs by name, and the answering version."""
        request = wire.encode_predict_request(self._spec(signature), inputs, outputs)
        answer = self._call(self._predict, request, timeout)
        response = _parse(pb.PredictResponse, answer, "PredictResponse")
        try:
            return wire.decode_outputs(response), response.model_spec.version.value
        except wire.WireError as error:
            raise InvalidResponse(str(error)) from None

    def metadata(self, *, timeout: float | None = None) -> ModelMetadata:
        """Class names, palette and input size from the model's ``metadata`` signature."""
        # No inputs: the signature's recorded default asks for one row.
        outputs, version = self.predict({}, signature=contract.METADATA.name, timeout=timeout)
        return ModelMetadata.from_outputs(outputs, version, model=self.model)

    def model_status(self, *, timeout: float | None = None) -> dict[str, list[VersionStatus]]:
        """The version states of the server that answered (GetModelStatus), under the
        client's target, e.g. ``{"host:8500": [3 AVAILABLE]}``."""
        request = pb.GetModelStatusRequest(model_spec=self._spec()).SerializeToString()
        data = self._call(self._status, request, timeout)
        response = _parse(pb.GetModelStatusResponse, data, "GetModelStatusResponse")
        return {
            self.target: [
                VersionStatus(
                    version=status.version,
                    state=pb.ModelVersionStatus.State.Name(status.state),
                    error=status.status.error_message,
                )
                for status in response.model_version_status
            ]
        }

    def wait_until_ready(self, timeout: float = 30.0) -> dict[str, list[VersionStatus]]:
        """Blocks until a server serves the model (a version AVAILABLE), polling
        GetModelStatus while servers start (UNAVAILABLE) and models load (NOT_FOUND); raises
        ServerUnavailable with the last state seen after ``timeout``, and any other error
        (a bad version label, say) at once."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            remaining = deadline - time.monotonic()
            try:
                statuses = self.model_status(timeout=max(min(remaining, 2.0), 0.01))
                if all(any(s.state == "AVAILABLE" for s in v) for v in statuses.values()):
                    return statuses
                last = str(statuses)
            except ClientError as error:
                if error.code not in _NOT_READY_YET or isinstance(error, TlsMismatch):
                    raise
                last = str(error)
            if time.monotonic() >= deadline:
                raise ServerUnavailable(
                    f"model {self.model!r} not available on {self.target} after "
                    f"{timeout:g} s; last: {last}"
                )
            if self._closing.wait(min(0.1, max(deadline - time.monotonic(), 0))):
                raise ClientClosed("the client was closed while waiting for the model")

    def segment(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Segmentation:
        """The class map of one frame (H×W×3 uint8; ``color`` says its channel order: OpenCV
        gives BGR). The server resizes; the class map comes back at the frame's H×W (or at
        ``output_size``)."""
        started = time.perf_counter()
        check_frame(frame, color)
        size = map_size(frame.shape[:2], self.output_size)
        signature = TRANSPORTS[self.transport]
        inputs = {signature.inputs[0]: self._encode_frame(frame, color)}
        return self._segment(signature.name, inputs, size, confidence, timeout, started)

    def segment_encoded(
        self,
        image: bytes,
        size: tuple[int, int],
        *,
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Segmentation:
        """The class map of an encoded JPEG or PNG, sent as it is to ``segment_jpeg`` (the
        server decodes it: no decoding and re-encoding here). ``size`` is the image's (H, W),
        from its header, against which the answer is checked."""
        if not isinstance(image, bytes) or not image:
            raise InvalidFrame(f"image must be non-empty bytes, got {type(image).__name__}")
        size = map_size(tuple(size), self.output_size)
        inputs = {contract.JPEG: [image]}
        started = time.perf_counter()
        return self._segment(contract.SEGMENT_JPEG.name, inputs, size, confidence, timeout, started)

    def _segment(
        self,
        signature: str,
        inputs: dict[str, np.ndarray | list[bytes]],
        size: tuple[int, int],
        confidence: bool,
        timeout: float | None,
        started: float,
    ) -> Segmentation:
        wanted = [contract.CLASS_MAP, contract.CONFIDENCE] if confidence else [contract.CLASS_MAP]
        if self.output_size is not None:  # left out otherwise: older exports lack the input
            inputs[contract.OUTPUT_SIZE] = np.array([self.output_size], np.int32)
        payload = wire.encode_predict_request(self._spec(signature), inputs, wanted)
        sent = time.perf_counter()
        answer = self._call(self._predict, payload, timeout)
        received = time.perf_counter()
        response = _parse(pb.PredictResponse, answer, "PredictResponse")
        outputs = {name: self._output(response, name, size) for name in wanted}
        done = time.perf_counter()
        return Segmentation(
            class_map=outputs[contract.CLASS_MAP],
            confidence=outputs.get(contract.CONFIDENCE),
            model_version=response.model_spec.version.value,
            timings=StageTimings(sent - started, received - sent, done - received),
            request_bytes=len(payload),
            response_bytes=len(answer),
        )

    def segment_async(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Future[Segmentation]:
        """``segment`` on the client's worker threads; the future raises its ClientError."""
        if self._closing.is_set():
            raise ClientClosed("the client is closed")
        return self._executor.submit(
            self.segment, frame, color=color, confidence=confidence, timeout=timeout
        )

    # -- frames ---------------------------------------------------------------------------

    def _encode_frame(self, frame: np.ndarray, color: str) -> np.ndarray | list[bytes]:
        if self.transport == "jpeg":
            # cv2.imencode reads BGR.
            bgr = frame if color == "bgr" else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise InvalidFrame(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
            return [encoded.tobytes()]
        # The model takes RGB; cvtColor also gives the contiguous buffer the request joins in.
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if color == "bgr" else frame
        return rgb[np.newaxis]

    def _output(
        self, response: pb.PredictResponse, name: str, map_size: tuple[int, int]
    ) -> np.ndarray:
        if name not in response.outputs:
            raise InvalidResponse(
                f"the answer lacks output {name!r}; it holds {sorted(response.outputs)}"
            )
        try:
            array = wire.decode_tensor(response.outputs[name], name)
        except wire.WireError as error:
            raise InvalidResponse(str(error)) from None
        if array.shape != (1, *map_size) or array.dtype != np.uint8:
            raise InvalidResponse(
                f"output {name!r} is {array.dtype} {list(array.shape)}, expected uint8 "
                f"[1, {map_size[0]}, {map_size[1]}] for this frame"
            )
        return array[0]
