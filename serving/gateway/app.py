"""The FastAPI app: ``POST /v1/segment``, model info, health, metrics and the results page.

    app = create_app(GatewaySettings(targets=("localhost:8500",)))
    uvicorn.run(app, port=8000)

    curl -F file=@street.jpg 'localhost:8000/v1/segment?format=json'
    curl --data-binary @street.jpg -H 'Content-Type: image/jpeg' localhost:8000/v1/segment -o m.png

Every refusal is a JSON ``{"detail": …}`` with the status that says why (413 too large, 415 not
JPEG/PNG, 400 undecodable, 503 model server down, 504 too slow); even an unexpected error
answers JSON (500), its traceback going to the log.
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from client import errors
from client.segmentation_client import ModelMetadata, SegmentationClient
from serving.gateway import images
from serving.gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"
# Status and metadata answer in milliseconds when the server is up; do not make a health
# check or the page wait for the segmentation deadline when it is not.
_INFO_TIMEOUT = 3.0
# Room for multipart boundaries and part headers around a file of the upload limit.
_MULTIPART_FRAMING = 64 * 1024

# Upstream failures → HTTP: the model server's own message goes along.
_UPSTREAM_STATUS: dict[type[errors.ClientError], int] = {
    errors.InvalidRequest: 400,  # e.g. a JPEG TensorFlow cannot decode
    errors.RequestTooLarge: 413,
    errors.ServerUnavailable: 503,
    errors.ModelNotFound: 503,  # the model (or pinned version) is not loaded
    errors.DeadlineExceeded: 504,
    errors.ClientClosed: 503,  # the gateway is shutting down
}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class GatewayMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rcseg_gateway_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rcseg_gateway_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            registry=self.registry,
        )


class Gateway:
    """What the routes share: the client, the settings, metrics, and the model's metadata
    (fetched once per model version)."""

    def __init__(self, settings: GatewaySettings, client: SegmentationClient):
        self.settings = settings
        self.client = client
        self.metrics = GatewayMetrics()
        self._metadata: dict[int, ModelMetadata] = {}
        self._lock = threading.Lock()

    def metadata(self, version: int) -> ModelMetadata:
        """The metadata of the version that answered, cached per version (fetched when a new
        version starts answering)."""
        with self._lock:
            cached = self._metadata.get(version)
        if cached is None:
            cached = self.client.metadata(timeout=_INFO_TIMEOUT)
            with self._lock:
                self._metadata[cached.model_version] = cached
        return cached


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _upstream_error(error: errors.ClientError) -> JSONResponse:
    status = next((s for kind, s in _UPSTREAM_STATUS.items() if isinstance(error, kind)), 502)
    return _error(status, f"model server: {error}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (chunked uploads have
    no Content-Length to check first); nothing past the limit is read or stored."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise images.UploadError(413, _too_large(int(declared), limit))
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise images.UploadError(413, _too_large(len(body), limit, partial=True))
    except ClientDisconnect:
        raise images.UploadError(400, "the client went away during the upload") from None
    return bytes(body)


async def _read_upload(request: Request, limit: int) -> bytes:
    """The image bytes from a multipart field ``file`` or a raw image body, at most ``limit``
    bytes of image (a multipart body may add 64 KiB of framing)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise images.UploadError(
                415,
                f"send the image as image/jpeg or image/png, or as multipart field 'file'; "
                f"got Content-Type {content_type}",
            )
        return await _read_body(request, limit)
    body = await _read_body(request, limit + _MULTIPART_FRAMING)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    # Starlette parses the bounded body we read, not the socket.
    async with Request(request.scope, replay).form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise images.UploadError(400, "multipart upload without a file field named 'file'")
        data = await upload.read()
    if len(data) > limit:
        raise images.UploadError(413, _too_large(len(data), limit))
    return data


def _too_large(size: int, limit: int, partial: bool = False) -> str:
    return (
        f"upload of {'more than ' if partial else ''}{size if not partial else limit:,} bytes "
        f"is over the limit of {limit:,} (gateway --max-upload-mb)"
    )


def _server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in timings.items())


def create_app(settings: GatewaySettings, client: SegmentationClient | None = None) -> FastAPI:
    """The app; it opens its own client to ``settings.targets`` unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = client is None
        app.state.gateway = Gateway(
            settings,
            client
            or SegmentationClient(
                settings.targets, settings.model, version=settings.version, timeout=settings.timeout
            ),
        )
        yield
        if own:
            app.state.gateway.client.close()

    app = FastAPI(
        title="RC-vehicle segmentation gateway",
        summary="DeepLab v3 class maps over HTTP, in front of TF Serving or the embedded server",
        version="1.0",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics = request.app.state.gateway.metrics
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", summary="The gateway process is alive")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model server is reachable and the model AVAILABLE")
    def readyz(request: Request):
        gateway: Gateway = request.app.state.gateway
        try:
            statuses = gateway.client.model_status(timeout=_INFO_TIMEOUT)
        except errors.ClientError as error:
            return _error(503, f"not ready: {error}")
        ready = all(any(v.state == "AVAILABLE" for v in vs) for vs in statuses.values())
        body = {
            "ready": ready,
            "model": settings.model,
            "servers": {t: [v.__dict__ for v in vs] for t, vs in statuses.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/v1/model", summary="Class names, palette, input size and version states")
    def model_info(request: Request):
        gateway: Gateway = request.app.state.gateway
        try:
            metadata = gateway.client.metadata(timeout=_INFO_TIMEOUT)
            statuses = gateway.client.model_status(timeout=_INFO_TIMEOUT)
        except errors.ClientError as error:
            return _upstream_error(error)
        return {
            "model": settings.model,
            "version": metadata.model_version,
            "class_names": list(metadata.class_names),
            "palette": metadata.palette.tolist(),
            "input_size": list(metadata.input_size),
            "output_stride": metadata.output_stride,
            "versions": [v.__dict__ for vs in statuses.values() for v in vs],
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
            },
        }

    @app.post(
        "/v1/segment",
        summary="Segment a JPEG or PNG image",
        description="The image as multipart field `file` or as the raw body (`image/jpeg`, "
        "`image/png`). `format=png`: palettized class-map PNG (pixel = VOC class id); `json`: "
        "class names, classes present, run-length class map, timings; `overlay`: JPEG of the "
        "image with the class colours blended in (`alpha`). Timings in `Server-Timing`.",
        openapi_extra=_UPLOAD_BODY,
        responses={
            200: {"content": {"image/png": {}, "image/jpeg": {}, "application/json": {}}},
            400: {"description": "The image does not decode"},
            413: {"description": "Too many bytes or pixels"},
            415: {"description": "Not a JPEG or PNG"},
            503: {"description": "The model server is unavailable"},
            504: {"description": "The model server did not answer in time"},
        },
    )
    async def segment(
        request: Request,
        format: Annotated[Literal["png", "json", "overlay"], Query()] = "png",
        alpha: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
    ):
        gateway: Gateway = request.app.state.gateway
        started = time.perf_counter()
        try:
            data = await _read_upload(request, settings.max_upload_bytes)
            return await run_in_threadpool(_answer, gateway, data, format, alpha, started)
        except images.UploadError as error:
            return _error(error.status, str(error))
        except errors.ClientError as error:
            return _upstream_error(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug, not the client's fault: the answer stays JSON (uvicorn logs the traceback).
        return _error(500, f"internal error: {type(error).__name__}: {error}")

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        registry = request.app.state.gateway.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _answer(gateway: Gateway, data: bytes, format: str, alpha: float, started: float) -> Response:
    """The blocking part of a segment request (runs on the thread pool)."""
    settings = gateway.settings
    info = images.read_header(data, settings.max_pixels)
    upright = None
    if info.rotated:
        # The browser shows a phone photo turned by its EXIF tag, TensorFlow's decoder would
        # not: send the pixels turned as people see them.
        upright = images.decode_upright_bgr(data)
    received = time.perf_counter()
    if upright is None:
        result = gateway.client.segment_encoded(data, (info.height, info.width))
    else:
        result = gateway.client.segment(upright, color="bgr")
    answered = time.perf_counter()
    metadata = gateway.metadata(result.model_version)
    class_map = result.class_map
    height, width = class_map.shape
    counts = np.bincount(class_map.reshape(-1), minlength=len(metadata.class_names))
    if len(counts) > len(metadata.class_names):
        raise errors.InvalidResponse(
            f"the class map holds id {len(counts) - 1}, the model has "
            f"{len(metadata.class_names)} classes"
        )
    present = np.flatnonzero(counts).tolist()
    headers = {
        "X-Model-Version": str(result.model_version),
        "X-Image-Size": f"{height}x{width}",
        "X-Classes-Present": ",".join(map(str, present)),
    }
    if format == "overlay":
        picture = upright if upright is not None else images.decode_bgr(data)
        body = images.overlay_jpeg(
            picture, class_map, metadata.palette, alpha, settings.overlay_quality
        )
        media_type = "image/jpeg"
    elif format == "png":
        body, media_type = images.class_map_png(class_map, metadata.palette), "image/png"
    else:
        body, media_type = None, "application/json"
    timings = {
        "read": (received - started) * 1000,
        "rpc": (answered - received) * 1000,
        "encode": (time.perf_counter() - answered) * 1000,
    }
    timings["total"] = (time.perf_counter() - started) * 1000
    headers["Server-Timing"] = _server_timing(timings)
    if body is not None:
        return Response(body, media_type=media_type, headers=headers)
    return JSONResponse(
        {
            "model": settings.model,
            "model_version": result.model_version,
            "height": height,
            "width": width,
            "class_names": list(metadata.class_names),
            "classes_present": [
                {
                    "id": int(i),
                    "name": metadata.class_names[i],
                    "pixels": int(counts[i]),
                    "fraction": round(int(counts[i]) / class_map.size, 6),
                }
                for i in present
            ],
            "class_map_rle": {"order": "row-major", **images.run_length(class_map)},
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        },
        headers=headers,
    )
