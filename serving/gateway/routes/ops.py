"""What probes and scrapers call: ``/healthz`` (liveness), ``/readyz`` (readiness) and
``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from client import ClientError
from serving.gateway.dependencies import ClientDep, MetricsDep, SettingsDep
from serving.gateway.errors import error_response
from serving.gateway.schemas import ErrorBody, Health, Readiness, VersionState
from serving.gateway.settings import INFO_TIMEOUT

router = APIRouter()


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> Health:
    """Async and dependency-free on purpose: sync routes run on the thread pool, where uploads
    waiting on a dead model server can hold every worker, and a liveness probe that waits
    behind them would get a healthy gateway restarted."""
    return Health()


@router.get(
    "/readyz",
    summary="The model server is reachable and the model AVAILABLE",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness | ErrorBody,
            "description": "No version AVAILABLE (the states), or no server answered",
        }
    },
)
def readyz(
    response: Response, settings: SettingsDep, client: ClientDep
) -> Readiness | JSONResponse:
    # Blocking gRPC call: a sync route, run on the thread pool.
    try:
        statuses = client.model_status(timeout=INFO_TIMEOUT)
    except ClientError as error:
        return error_response(503, f"not ready: {error}")
    ready = all(any(v.state == "AVAILABLE" for v in vs) for vs in statuses.values())
    response.status_code = 200 if ready else 503
    servers = {t: [VersionState(**v.__dict__) for v in vs] for t, vs in statuses.items()}
    return Readiness(ready=ready, model=settings.model, servers=servers)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(metrics: MetricsDep) -> Response:
    # Async like /healthz: a scrape must not queue behind uploads on the thread pool.
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
