"""``/v1/model``: what the model is (classes, colours, sizes), which versions the servers
hold, and the gateway's limits. The results page starts here."""

from __future__ import annotations

from fastapi import APIRouter

from serving.gateway.dependencies import ClientDep, SettingsDep
from serving.gateway.errors import error_responses
from serving.gateway.schemas import Limits, ModelInfo, VersionState
from serving.gateway.settings import INFO_TIMEOUT

router = APIRouter()


@router.get(
    "/v1/model",
    summary="Class names, palette, input size and version states",
    responses=error_responses(502, 503, 504),
)
def model_info(settings: SettingsDep, client: ClientDep) -> ModelInfo:
    # Blocking gRPC calls: a sync route, run on the thread pool.
    metadata = client.metadata(timeout=INFO_TIMEOUT)
    statuses = client.model_status(timeout=INFO_TIMEOUT)
    return ModelInfo(
        model=settings.model,
        version=metadata.model_version,
        class_names=list(metadata.class_names),
        palette=metadata.palette.tolist(),
        input_size=list(metadata.input_size),
        output_stride=metadata.output_stride,
        versions=[VersionState(**v.__dict__) for vs in statuses.values() for v in vs],
        limits=Limits(max_upload_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels),
    )
