"""The embedded model server: TF Serving's gRPC API on a ModelManager, plus health and metrics.

    server = EmbeddedServer(sources, ServerOptions())
    server.start()           # loads the models, then listens
    server.stop(grace=10)    # `python -m serving` does this on SIGTERM/SIGINT

Health (``grpc.health.v1``, for ``""`` and the PredictionService) is SERVING while every
configured model has a version AVAILABLE, and NOT_SERVING otherwise: before the first version
loads, when none loads, and from shutdown on. A model added while serving (models.config
re-read every ``options.model_config_poll_seconds``, HandleReloadConfigRequest) counts from its
first AVAILABLE version: adding one must not take every replica out of service while it loads.

``stop(grace)`` is TF Serving's shutdown: the health service turns NOT_SERVING, no new RPC is
accepted, RPCs received before (running or queued for a request thread) get ``grace`` seconds
to be answered (``serving.draining``). The REST API (``options.rest_port``, ``serving.rest``)
shares the gate: new calls get 503 and the ones received before finish within the same grace.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from client.contract import PREDICTION_SERVICE
from serving import handlers
from serving.draining import ArrivalGate, CountingThreadPool
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.model_config import ConfigFileWatcher, ModelSource
from serving.options import NO_LIMITS, ServerOptions
from serving.rest import RestApi, RestServer
from serving.services import ModelService, PredictionService

log = logging.getLogger(__name__)

# After the last call in flight returned, how long its answer may take to leave before gRPC
# closes the connections (bounded by the grace period).
ANSWER_FLUSH_SECONDS = 1.0


class EmbeddedServer:
    def __init__(
        self, sources: list[ModelSource], options: ServerOptions, config_path: Path | None = None
    ):
        """``config_path``: the model config file ``sources`` were read from, re-read every
        ``options.model_config_poll_seconds``; a HandleReloadConfigRequest's relative base
        paths are read beside it (else from the working directory)."""
        self.options = options
        self.config_path = config_path
        self.config_dir = Path(config_path).parent if config_path else Path()
        self.config_watcher: ConfigFileWatcher | None = None
        self.metrics = ServingMetrics()
        self.health = health.HealthServicer()
        self._health_lock = threading.Lock()
        self.manager = ModelManager(
            sources,
            poll_seconds=options.poll_seconds,
            warm_up=lambda version: handlers.replay_warmup(version, NO_LIMITS),
            unload_timeout=options.unload_timeout,
            on_change=self._model_changed,
            on_models=self._update_health,
        )
        self.run_slots = threading.BoundedSemaphore(options.max_concurrent)
        self.port: int | None = None
        self.metrics_http = None
        self.rest: RestServer | None = None  # TF Serving's REST API, with --rest-port
        self._grpc: grpc.Server | None = None
        self._stopped = threading.Event()
        self.gate = ArrivalGate()  # refuses new RPCs once shutdown begins
        # Every RPC received and not yet answered, queued ones included (shutdown waits).
        self.pool = CountingThreadPool(options.workers, self.gate, thread_name_prefix="rpc")
        self.metrics.received.set_function(
            lambda: self.pool.calls.active + (self.rest.calls.active if self.rest else 0)
        )

    def start(self) -> None:
        """Loads every model's versions (blocking), then starts listening."""
        credentials = self.options.credentials()  # an unreadable TLS file fails before loading
        self.manager.start()
        size = self.options.max_message_bytes
        self._grpc = grpc.server(
            self.pool,
            interceptors=[self.gate],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),  # a second server on the port fails, not shares it
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.manager, self.options.limits, self.metrics, self.run_slots),
            self._grpc,
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.manager, self.metrics, self.config_dir), self._grpc
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
        if self.options.rest_port is not None:
            try:
                self.rest = self._rest_server()
            except OSError:
                self.manager.stop()
                raise
        self._update_health()  # before the port opens: the servicer's default is SERVING
        self._grpc.start()
        if self.rest is not None:
            self.rest.start()
        if self.config_path is not None and self.options.model_config_poll_seconds > 0:
            self.config_watcher = ConfigFileWatcher(
                self.config_path, self.manager.reconfigure, self.options.model_config_poll_seconds
            )
            self.config_watcher.start()
        metrics_port = self.options.metrics_port
        on_rest = self.rest is not None and metrics_port == self.options.rest_port != 0
        if metrics_port is not None and not on_rest:  # one port asked for both: REST serves it
            self.metrics_http = self.metrics.serve(self.options.host, metrics_port)

    def _rest_server(self) -> RestServer:
        """TF Serving's REST API on the same handlers, limits and model slots as gRPC, bound
        now (a port in use fails before anything runs); TLS with the gRPC port's files."""
        options = self.options
        api = RestApi(self.manager, options.limits, self.metrics, self.run_slots)
        tls = (options.tls_cert, options.tls_key) if options.tls_cert else None
        return RestServer(
            api,
            self.gate,
            options.host,
            options.rest_port,
            options.max_message_bytes,
            options.workers,
            self.metrics.registry,
            tls,
        )

    def _model_changed(self, model: str, version: int, state: str, seconds: float | None):
        self.metrics.model_changed(model, version, state, seconds)
        self._update_health()

    def _update_health(self) -> None:
        """SERVING while every configured model has a version AVAILABLE, NOT_SERVING otherwise
        (an orchestrator's probe then sees a server that would answer NOT_FOUND)."""
        status = health_pb2.HealthCheckResponse
        with self._health_lock:  # the poller and unloading threads both report changes
            state = status.NOT_SERVING if self.manager.unavailable() else status.SERVING
            for service in ("", PREDICTION_SERVICE):
                self.health.set(service, state)

    def stop(self, grace: float | None = None) -> None:
        """Stops accepting, lets in-flight RPCs finish within ``grace`` seconds (default:
        the options')."""
        if self._stopped.is_set():
            return
        grace = self.options.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        if self._grpc is not None:
            # Every received call (queued ones too) is answered with the connections open, and
            # the answers get a moment to leave: gRPC's own stop closes a connection as soon as
            # no call runs on it, which cut large answers still being written. Then gRPC stops
            # with what is left of the grace.
            deadline = time.monotonic() + grace
            self.gate.close()
            if self.pool.calls.wait_idle(grace):
                time.sleep(min(ANSWER_FLUSH_SECONDS, max(deadline - time.monotonic(), 0)))
            self._grpc.stop(max(deadline - time.monotonic(), 0)).wait()
            if self.rest is not None:  # its calls ran meanwhile; the rest of the grace is theirs
                self.rest.stop(max(deadline - time.monotonic(), 0))
        if self.config_watcher is not None:
            self.config_watcher.stop()
        self.manager.stop()
        self.pool.shutdown(wait=False)
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        self._stopped.set()
