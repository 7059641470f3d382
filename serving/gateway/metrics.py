"""Prometheus metrics of the gateway: requests by route and status, and their latency.

Each app has its own registry, so several apps in one process (tests) do not share counts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


class GatewayMetrics:
    """The gateway's counters, in a registry of its own (``/metrics`` serves it)."""

    def __init__(self) -> None:
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

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


def count_requests(metrics: GatewayMetrics) -> Middleware:
    """An HTTP middleware that counts every answer under its route's path template
    (``/v1/segment``, not the URL asked for, so labels stay few; ``unmatched`` for 404s)."""

    async def count(request: Request, call_next) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        path = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.observe(path, response.status_code, time.perf_counter() - started)
        return response

    return count
