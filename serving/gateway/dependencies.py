"""FastAPI providers of the shared state: routes declare what they use (``SettingsDep``,
``ClientDep``, …) instead of reaching into the app.

The providers are ``async``: they only look up objects, and FastAPI runs a sync provider on
the thread pool, where it would queue behind uploads that wait on the model server.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from client import SegmentationClient
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.settings import GatewaySettings
from serving.gateway.state import Gateway, MetadataCache


async def get_gateway(request: Request) -> Gateway:
    """The state the lifespan opened (Starlette's lifespan state, copied into each request)."""
    return request.state.gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_settings(gateway: GatewayDep) -> GatewaySettings:
    return gateway.settings


async def get_client(gateway: GatewayDep) -> SegmentationClient:
    return gateway.client


async def get_metadata(gateway: GatewayDep) -> MetadataCache:
    return gateway.metadata


async def get_metrics(gateway: GatewayDep) -> GatewayMetrics:
    return gateway.metrics


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
ClientDep = Annotated[SegmentationClient, Depends(get_client)]
MetadataDep = Annotated[MetadataCache, Depends(get_metadata)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
