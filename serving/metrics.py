"""Prometheus metrics at TF Serving's path, ``/monitoring/prometheus/metrics``.

Requests by model, signature and status code; latency histograms; requests in flight and
received (queued included); model load time and the state of each version. Each server has
its own registry, so several can run in one process (the tests do).

    metrics = ServingMetrics()
    http = metrics.serve("127.0.0.1", 8502)   # GET /monitoring/prometheus/metrics
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

METRICS_PATH = "/monitoring/prometheus/metrics"
# Seconds: from a few ms (tiny models, metadata) to seconds (ResNet-50 on a CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # a scrape every few seconds is not news


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rcseg_requests",
            "gRPC requests by method, model, signature and status code",
            ["method", "model", "signature", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rcseg_request_latency_seconds",
            "Time from receiving a request to answering it",
            ["method", "model", "signature"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rcseg_requests_in_flight", "Requests being answered now", registry=self.registry
        )
        self.received = Gauge(
            "rcseg_requests_received",
            "RPCs received and not yet answered: running, or queued for a request thread",
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "rcseg_model_load_seconds",
            "Load and warmup time of each model version",
            ["model", "version"],
            registry=self.registry,
        )
        self.version_state = Gauge(
            "rcseg_model_version_state",
            "1 for the state each model version is in (LOADING, AVAILABLE, UNLOADING, END)",
            ["model", "version", "state"],
            registry=self.registry,
        )

    def model_changed(self, model: str, version: int, state: str, seconds: float | None) -> None:
        """ModelManager's ``on_change`` hook."""
        for known in STATES:
            self.version_state.labels(model, str(version), known).set(int(known == state))
        if seconds is not None:
            self.load_seconds.labels(model, str(version)).set(seconds)

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serves the metrics over HTTP in a daemon thread; 404 for any other path."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") == METRICS_PATH:
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"metrics are at {METRICS_PATH}\n".encode()]

        server = make_server(host, port, app, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server
