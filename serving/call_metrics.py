"""One call's metrics, for the gRPC servicers and the REST API alike: a REST call counts as the
gRPC method it becomes (``Predict``, ``GetModelStatus``, ``GetModelMetadata``), so dashboards
and alerts need no second set of series.

    with recorded(metrics, manager, "Predict", request.model_spec):
        response = handlers.predict(manager, request, limits)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import grpc
from tensorflow_serving.apis import model_pb2

from serving import handlers
from serving.errors import ServingError
from serving.manager import ModelManager
from serving.metrics import ServingMetrics


def _labels(
    manager: ModelManager, method: str, spec: model_pb2.ModelSpec | None
) -> tuple[str, str]:
    """``(model, signature)`` label values. Only served names become label values, so a client
    cannot grow the metrics at will; a call that names no model (HandleReloadConfigRequest)
    gets empty ones."""
    if spec is None:
        return "", ""
    signature = spec.signature_name or (handlers.DEFAULT_SIGNATURE if method == "Predict" else "")
    return manager.known_names(spec.name, signature)


@contextlib.contextmanager
def recorded(
    metrics: ServingMetrics,
    manager: ModelManager,
    method: str,
    spec: model_pb2.ModelSpec | None,
) -> Iterator[None]:
    """Counts the block as a request in flight, then its status code (a ServingError's, or
    INTERNAL for any other exception, which is re-raised) and latency. The labels are read from
    ``spec`` when the block ends: a REST predict learns its signature name from the body."""
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    metrics.in_flight.inc()
    try:
        yield
    except ServingError as error:
        code = error.code
        raise
    except Exception:
        code = grpc.StatusCode.INTERNAL
        raise
    finally:
        metrics.in_flight.dec()
        model, signature = _labels(manager, method, spec)
        metrics.requests.labels(method, model, signature, code.name).inc()
        metrics.latency.labels(method, model, signature).observe(time.perf_counter() - started)
