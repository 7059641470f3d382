"""The FastAPI app: ``POST /v1/segment``, model info, health, metrics and the results page.

    settings = GatewaySettings(targets=("model-server:PORT",))
    uvicorn.Server(uvicorn_config(settings)).run()  # cli: with the connection bounds

    curl -F file=@street.jpg "$GATEWAY/v1/segment?format=json"
    curl --data-binary @street.jpg -H 'Content-Type: image/jpeg' "$GATEWAY/v1/segment" -o m.png

Where things are: ``routes/`` (one router per concern), ``dependencies`` (the shared state
the routes declare), ``upload`` → ``inference`` → ``formats`` (a segment request's steps),
``schemas`` (every JSON answer), ``errors`` (every refusal as JSON with its status).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from client import SegmentationClient
from serving.gateway.errors import install_error_handlers
from serving.gateway.metrics import GatewayMetrics, count_requests
from serving.gateway.routes import ROUTERS
from serving.gateway.routes.page import STATIC
from serving.gateway.settings import GatewaySettings
from serving.gateway.state import Gateway


def create_app(settings: GatewaySettings, client: SegmentationClient | None = None) -> FastAPI:
    """The app; it opens its own client to ``settings.targets`` unless one is given (and
    then leaves that client open when it stops)."""
    metrics = GatewayMetrics()  # made here: the middleware counts from the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Gateway]]:
        gateway = Gateway.open(settings, metrics, client)
        try:
            yield {"gateway": gateway}  # Starlette's lifespan state: request.state.gateway
        finally:
            gateway.close()

    app = FastAPI(
        title="RC-vehicle segmentation gateway",
        summary="DeepLab v3 class maps over HTTP, in front of TF Serving or the embedded server",
        version="1.0",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.middleware("http")(count_requests(metrics))
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    return app
