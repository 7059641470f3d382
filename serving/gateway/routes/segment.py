"""``POST /v1/segment``: an uploaded JPEG or PNG in, its class map out as a PNG, an overlay
JPEG or JSON. The route reads the upload; ``inference`` does the work, ``formats`` renders."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from serving.gateway.dependencies import ClientDep, MetadataDep, SettingsDep
from serving.gateway.errors import error_responses
from serving.gateway.formats import Format, render
from serving.gateway.inference import segment_upload
from serving.gateway.schemas import SegmentAnswer
from serving.gateway.upload import UPLOAD_BODY, read_upload

_BINARY = {"schema": {"type": "string", "format": "binary"}}

router = APIRouter()


@router.post(
    "/v1/segment",
    summary="Segment a JPEG or PNG image",
    description="The image as multipart field `file` or as the raw body (`image/jpeg`, "
    "`image/png`). `format=png`: palettized class-map PNG (pixel = VOC class id); `json`: "
    "class names, classes present, run-length class map, timings; `overlay`: JPEG of the "
    "image with the class colours blended in (`alpha`). Timings in `Server-Timing`.",
    openapi_extra=UPLOAD_BODY,
    response_model=SegmentAnswer,
    responses={
        200: {
            "description": "The class map in the format asked for",
            "content": {"image/png": _BINARY, "image/jpeg": _BINARY},
        },
        **error_responses(400, 413, 415, 502, 503, 504),
    },
)
async def segment(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    metadata: MetadataDep,
    format: Annotated[Format, Query()] = "png",
    alpha: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
) -> Response:
    started = time.perf_counter()
    data = await read_upload(request, settings.max_upload_bytes)

    def work() -> Response:  # blocking: decoding, the gRPC call, encoding
        segmented = segment_upload(
            data,
            client=client,
            metadata=metadata,
            max_pixels=settings.max_pixels,
            started=started,
        )
        return render(segmented, format, alpha, settings)

    return await run_in_threadpool(work)
