"""The embedded model server: TF Serving's gRPC API on a ModelManager, plus health and metrics.

    >>> server = EmbeddedServer(sources, ServerOptions(port=8500))
    >>> server.start()           # loads the models, then listens
    >>> server.stop(grace=10)    # `python -m serving` does this on SIGTERM/SIGINT

``stop(grace)`` is TF Serving's shutdown: the health service turns NOT_SERVING, no new RPC is
accepted, RPCs in flight get ``grace`` seconds to finish.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import handlers
from serving.inputs import NO_LIMITS, Limits
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.model_config import ModelSource
from serving.servable import InFlight
from serving.services import ModelService, PredictionService

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
# After the last call in flight returned, how long its answer may take to leave before gRPC
# closes the connections (bounded by the grace period).
ANSWER_FLUSH_SECONDS = 1.0


def default_workers() -> int:
    """Request threads: enough to keep the model busy and queue a few more; each waits on
    TensorFlow, which uses the cores itself (intra-op threads)."""
    return max(4, 2 * (os.cpu_count() or 1))


@dataclass
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = 8500
    metrics_port: int | None = None  # None: no metrics endpoint
    poll_seconds: float = 2.0
    max_message_bytes: int = 64 * MIB
    workers: int = field(default_factory=default_workers)
    limits: Limits = field(default_factory=Limits)
    unload_timeout: float = 60.0
    # Requests running the model at once; the others wait their turn. On a CPU, parallel runs
    # only share the cores (and each holds its frame's big tensors).
    max_concurrent: int = 2
    # PEM files: with both, the port speaks TLS (robots reaching the server over Wi-Fi).
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self):
        # A request's outputs are 2 bytes per pixel; they must fit one gRPC message.
        if 2 * self.limits.max_pixels > self.max_message_bytes:
            raise ValueError(
                f"--max-pixels {self.limits.max_pixels:,} gives responses of up to "
                f"{2 * self.limits.max_pixels:,} bytes, over --max-message-mb "
                f"({self.max_message_bytes:,} bytes)"
            )
        if self.max_concurrent < 1:
            raise ValueError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --ssl-cert and --ssl-key")

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials from the PEM files, or None for a plain port."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        try:
            pair = (Path(self.tls_key).read_bytes(), Path(self.tls_cert).read_bytes())
        except OSError as error:
            raise ValueError(f"cannot read TLS file: {error}") from error
        return grpc.ssl_server_credentials([pair])


class EmbeddedServer:
    def __init__(self, sources: list[ModelSource], options: ServerOptions):
        self.options = options
        self.metrics = ServingMetrics()
        self.manager = ModelManager(
            sources,
            poll_seconds=options.poll_seconds,
            warm_up=lambda version: handlers.replay_warmup(version, NO_LIMITS),
            unload_timeout=options.unload_timeout,
            on_change=self.metrics.model_changed,
        )
        self.health = health.HealthServicer()
        self.run_slots = threading.BoundedSemaphore(options.max_concurrent)
        self.port: int | None = None
        self.metrics_http = None
        self._grpc: grpc.Server | None = None
        self._stopped = threading.Event()
        self.calls = InFlight()  # every gRPC call being answered (shutdown waits for them)

    def start(self) -> None:
        """Loads every model's versions (blocking), then starts listening."""
        credentials = self.options.credentials()  # an unreadable TLS file fails before loading
        self.manager.start()
        size = self.options.max_message_bytes
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(self.options.workers, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),  # a second server on the port fails, not shares it
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(
                self.manager, self.options.limits, self.metrics, self.run_slots, self.calls
            ),
            self._grpc,
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.manager, self.metrics, self.calls), self._grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        address = f"{self.options.host}:{self.options.port}"
        try:
            if credentials is None:
                self.port = self._grpc.add_insecure_port(address)
            else:
                self.port = self._grpc.add_secure_port(address, credentials)
        except RuntimeError as error:
            self.manager.stop()
            why = "in use, or the TLS certificate and key rejected" if credentials else "in use?"
            raise OSError(f"cannot listen on {address} ({why}): {error}") from error
        self._grpc.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", PREDICTION_SERVICE):
            self.health.set(service, serving)
        if self.options.metrics_port is not None:
            self.metrics_http = self.metrics.serve(self.options.host, self.options.metrics_port)

    def stop(self, grace: float = 10.0) -> None:
        """Stops accepting, lets in-flight RPCs finish within ``grace`` seconds."""
        if self._stopped.is_set():
            return
        self.health.enter_graceful_shutdown()
        if self._grpc is not None:
            # Calls in flight finish with the connections open and their answers get a moment
            # to leave (see services._answer); then gRPC stops with what is left of the grace.
            deadline = time.monotonic() + grace
            self.calls.close()
            if self.calls.wait_idle(grace):
                time.sleep(min(ANSWER_FLUSH_SECONDS, max(deadline - time.monotonic(), 0)))
            self._grpc.stop(max(deadline - time.monotonic(), 0)).wait()
        self.manager.stop()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        self._stopped.set()
