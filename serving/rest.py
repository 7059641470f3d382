"""TF Serving's REST API on the embedded server, on ``--rest-port`` (TF Serving's is 8501).

    GET  /v1/models/deeplabv3[/versions/1|/labels/stable]            model status
    GET  /v1/models/deeplabv3[/versions/1|/labels/stable]/metadata   signature defs
    POST /v1/models/deeplabv3[/versions/1|/labels/stable]:predict    {"instances"|"inputs": …}
    GET  /monitoring/prometheus/metrics                              the server's metrics

Each call becomes the gRPC request proto and goes through the gRPC handlers
(``serving.handlers``): the same limits, input checks, model slots, metrics and messages; JSON ⇄
tensors is ``serving.rest_json``. Errors are TF Serving's: ``{"error": "…"}`` with the HTTP
status its ``http_server.cc`` gives the gRPC code (INVALID_ARGUMENT, FAILED_PRECONDITION → 400,
NOT_FOUND → 404, UNAVAILABLE → 503, UNIMPLEMENTED → 501, …). A body over the server's message
size is 413 (TF Serving sets no limit; 413 is libevent's answer when one is set).

    rest = RestServer(RestApi(manager, Limits(), metrics), gate, "127.0.0.1", 0, 64 * MIB, 4,
                      metrics.registry)
    rest.start()        # rest.port: the port chosen
    rest.stop(grace=10)  # after gate.close(): calls received before are answered

Why a bare ASGI callable (Starlette's Request and Response) under uvicorn: both are
dependencies already (the gateway); uvicorn is a maintained HTTP/1.1 server with keep-alive,
flow control, TLS and a graceful shutdown, and it runs in one background thread; without a
router, TF Serving's routing stays exact (its path regexes; "Malformed request" for the rest of
``/v1/``) instead of becoming a router's 404, 405 or 422. The blocking work runs on a pool of
``--workers`` threads, as gRPC's does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from concurrent import futures
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import unquote

import grpc
import uvicorn
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving import handlers, rest_json
from serving.call_metrics import recorded
from serving.draining import SHUTTING_DOWN, ArrivalGate
from serving.errors import ServingError, echo, invalid
from serving.manager import ModelManager
from serving.metrics import METRICS_PATH, ServingMetrics
from serving.options import Limits
from serving.servable import InFlight

log = logging.getLogger(__name__)

# TF Serving's paths (http_rest_api_util.cc), matched whole and case-blind as RE2 does there.
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?",
    re.IGNORECASE,
)
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
# The HTTP status of each gRPC code (TF Serving's http_server.cc, ToHTTPStatusCode).
C = grpc.StatusCode
HTTP_STATUS = {
    C.OK: 200,
    C.CANCELLED: 499,
    C.UNKNOWN: 500,
    C.INVALID_ARGUMENT: 400,
    C.DEADLINE_EXCEEDED: 504,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.PERMISSION_DENIED: 403,
    C.RESOURCE_EXHAUSTED: 429,
    C.FAILED_PRECONDITION: 400,
    C.ABORTED: 409,
    C.OUT_OF_RANGE: 400,
    C.UNIMPLEMENTED: 501,
    C.INTERNAL: 500,
    C.UNAVAILABLE: 503,
    C.DATA_LOSS: 500,
    C.UNAUTHENTICATED: 401,
}
PAYLOAD_TOO_LARGE = 413
JSON_TYPE = "application/json"
# After the last call in flight was answered, how long uvicorn may take to close its
# connections (the answers are written by then; bounded by what is left of the grace).
CLOSE_SECONDS = 1.0


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """The ModelSpec a path names: the name percent-decoded, the version an int64."""
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None:
        if int(version) >= 2**63:
            raise invalid(f"Failed to convert version: {echo(version)} to numeric.")
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = unquote(label)
    return spec


def _serving_args(spec: model_pb2.ModelSpec) -> dict:
    return dict(
        name=spec.name,
        version=spec.version.value if spec.HasField("version") else None,
        label=spec.version_label or None,
    )


def _json(message, **options) -> dict:
    """A proto as TF Serving prints it: every field, default or not."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True, **options)


class RestApi:
    """The REST calls on a ModelManager, no HTTP: ``answer(method, path, body)`` →
    ``(HTTP status, JSON document)``; never raises."""

    def __init__(
        self,
        manager: ModelManager,
        limits: Limits,
        metrics: ServingMetrics,
        run_slots: threading.Semaphore | None = None,
    ):
        self.manager, self.limits, self.metrics = manager, limits, metrics
        self.run_slots = run_slots

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        try:
            return 200, self._dispatch(method, path, body)
        except ServingError as error:
            return HTTP_STATUS.get(error.code, 500), {"error": error.message}
        except Exception as error:  # never a dead server: report it and answer 500
            log.exception("REST %s %s failed", method, echo(path))
            return 500, {"error": f"{type(error).__name__}: {error}"}

    def _dispatch(self, method: str, path: str, body: bytes) -> dict:
        malformed = invalid(f"Malformed request: {method} {echo(path)}")
        if method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            spec = _model_spec(name, version, label)
            if verb == "predict":
                return self._predict(spec, body)
            if verb in ("classify", "regress"):
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{verb} is not served here: this model answers :predict (and gRPC's Predict)",
                )
            raise malformed  # TF Serving matches the verb case-blind, then compares it as is
        if method == "GET" and (match := STATUS_PATH.fullmatch(path)):
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid("Missing model name in request.")
            spec = _model_spec(name, version, label)
            return self._metadata(spec) if metadata == "metadata" else self._status(spec)
        raise malformed

    def _recorded(self, method: str, spec: model_pb2.ModelSpec) -> AbstractContextManager:
        """The call's metrics, as the gRPC method it becomes (``serving.call_metrics``)."""
        return recorded(self.metrics, self.manager, method, spec)

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> dict:
        request = predict_pb2.PredictRequest(model_spec=spec)
        # The labels are read when the call ends: by then the body has named the signature.
        with self._recorded("Predict", request.model_spec):
            doc = rest_json.parse_json(body)
            name = request.model_spec.signature_name = rest_json.signature_name(doc)
            key = name or handlers.DEFAULT_SIGNATURE
            # The signature's inputs type the JSON (TF Serving's GetInfoMap).
            with self.manager.serving(**_serving_args(spec)) as version:
                signature = version.signature_defs.get(key)
            if signature is None:
                raise invalid(f'Serving signature name: "{echo(key)}" not found in signature def')
            form, inputs = rest_json.request_inputs(doc, signature, name)
            for input_name, tensor in inputs.items():
                request.inputs[input_name].CopyFrom(tensor)
            response = handlers.predict(self.manager, request, self.limits, self.run_slots)
            return rest_json.response_json(response.outputs, form)

    def _status(self, spec: model_pb2.ModelSpec) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        with self._recorded("GetModelStatus", spec):
            response = handlers.get_model_status(self.manager, request)
        for entry in response.model_version_status:
            entry.status.SetInParent()  # TF Serving prints an OK status too
        return _json(response)

    def _metadata(self, spec: model_pb2.ModelSpec) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]
        )
        with self._recorded("GetModelMetadata", spec):
            response = handlers.get_model_metadata(self.manager, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        names = dict(preserving_proto_field_name=True)
        return {
            "model_spec": _json(response.model_spec, **names),
            "metadata": {"signature_def": _json(signatures, **names)},
        }


def _response(status: int, doc: dict) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status, media_type=JSON_TYPE)


class _TooLarge(Exception):
    pass


class RestServer:
    """``api`` over HTTP/1.1 on ``host:port`` in a background thread, refusing new calls with
    503 once ``gate`` closes; ``stop`` lets the calls received before finish."""

    def __init__(
        self,
        api: RestApi,
        gate: ArrivalGate,
        host: str,
        port: int,
        max_body_bytes: int,
        workers: int,
        registry: CollectorRegistry,
        tls: tuple[Path, Path] | None = None,
    ):
        self.api, self.gate, self.registry = api, gate, registry
        self.host, self.max_body_bytes = host, max_body_bytes
        self.calls = InFlight()  # received and not yet answered: shutdown waits for them
        self.pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="rest")
        self._socket = self._bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        cert, key = tls if tls else (None, None)
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        try:  # now, not in the thread: a certificate Python's ssl rejects fails the start
            config.load()
        except BaseException:
            self._socket.close()
            raise
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run,
            kwargs={"sockets": [self._socket]},
            name="rest-http",
            daemon=True,
        )

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """The listening socket, bound now: a port in use fails here, before anything runs."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            return socket.create_server((host, port), family=family)
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port} (REST; in use?): {error}") from error

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Waits up to ``grace`` seconds for the calls received before ``gate`` closed, then
        closes the port and the connections."""
        deadline = time.monotonic() + grace
        self.calls.wait_idle(grace)
        self._uvicorn.config.timeout_graceful_shutdown = max(
            min(CLOSE_SECONDS, deadline - time.monotonic()), 0.1
        )
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=CLOSE_SECONDS + 1)
        else:
            self._socket.close()
        self.pool.shutdown(wait=False)

    async def __call__(self, scope, receive, send) -> None:
        """The ASGI application: metrics, then TF Serving's ``/v1/`` API, else 404."""
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope["path"] == METRICS_PATH and request.method == "GET":
            body = await asyncio.to_thread(generate_latest, self.registry)
            await Response(body, media_type=CONTENT_TYPE_LATEST)(scope, receive, send)
            return
        if not API_PATH.fullmatch(path):
            message = f"not found: {echo(path)} (TF Serving's REST API is under /v1/)"
            await _response(404, {"error": message})(scope, receive, send)
            return
        if not self._admitted():
            refusal = _response(HTTP_STATUS[C.UNAVAILABLE], {"error": SHUTTING_DOWN})
            await refusal(scope, receive, send)
            return
        try:
            response = await self._answer(request, path)
            if response is not None:
                await response(scope, receive, send)
        finally:
            self.calls.leave()

    def _admitted(self) -> bool:
        """Counts the call unless the gate has closed. Read again once counted: either stop()
        sees the count and waits for it, or the call sees the gate closed. Refusals are not
        counted (clients retrying in a loop would keep the count from reaching 0)."""
        if self.gate.closed:
            return False
        self.calls.enter()
        if self.gate.closed:
            self.calls.leave()
            return False
        return True

    async def _answer(self, request: Request, path: str) -> Response | None:
        """The answer, or None when the client left before sending its whole body."""
        try:
            body = await self._body(request)
        except _TooLarge as error:  # uvicorn discards the rest of the body, keeps the connection
            return _response(PAYLOAD_TOO_LARGE, {"error": str(error)})
        except ClientDisconnect:
            return None
        loop = asyncio.get_running_loop()
        status, doc = await loop.run_in_executor(
            self.pool, self.api.answer, request.method, path, body
        )
        return await loop.run_in_executor(self.pool, _response, status, doc)

    async def _body(self, request: Request) -> bytes:
        """The request body, refused past ``max_body_bytes`` before more of it is read."""
        limit = self.max_body_bytes
        too_large = _TooLarge(
            f"the request body is larger than this server accepts ({limit:,} bytes, "
            "--max-message-mb)"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)
