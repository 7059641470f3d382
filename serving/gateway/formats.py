"""A segmented upload as an HTTP answer, per ``format``: ``png`` (the palettized class map),
``overlay`` (a JPEG of the image with the class colours blended in) or ``json``
(``SegmentAnswer``). Every format carries the same headers and ``Server-Timing``."""

from __future__ import annotations

import time
from typing import Literal

from fastapi.responses import JSONResponse, Response

from serving.gateway import images
from serving.gateway.inference import Segmented
from serving.gateway.schemas import ClassPresence, RunLength, SegmentAnswer, Timings
from serving.gateway.settings import GatewaySettings

Format = Literal["png", "json", "overlay"]

MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "overlay": "image/jpeg",
    "json": "application/json",
}


def render(
    segmented: Segmented, format: Format, alpha: float, settings: GatewaySettings
) -> Response:
    """The answer in ``format``; the encoding is timed (``encode`` in ``Server-Timing``)."""
    body = encode_picture(segmented, format, alpha, settings.overlay_quality)
    timings = measure(segmented, time.perf_counter())
    headers = answer_headers(segmented) | {"Server-Timing": server_timing(timings)}
    if body is None:
        answer = json_answer(segmented, settings.model, timings)
        return JSONResponse(answer.model_dump(), headers=headers)
    return Response(body, media_type=MEDIA_TYPES[format], headers=headers)


def encode_picture(
    segmented: Segmented, format: Format, alpha: float, quality: int
) -> bytes | None:
    """The PNG or overlay JPEG; None for ``json``, whose body holds the timings (made last)."""
    if format == "png":
        return images.class_map_png(segmented.class_map, segmented.metadata.palette)
    if format == "overlay":
        picture = segmented.picture_bgr()
        palette = segmented.metadata.palette
        return images.overlay_jpeg(picture, segmented.class_map, palette, alpha, quality)
    return None


def measure(segmented: Segmented, now: float) -> Timings:
    """Milliseconds per stage, up to ``now``."""
    clock = segmented.clock
    return Timings(
        read=(clock.received - clock.started) * 1000,
        rpc=(clock.answered - clock.received) * 1000,
        encode=(now - clock.answered) * 1000,
        total=(now - clock.started) * 1000,
    )


def answer_headers(segmented: Segmented) -> dict[str, str]:
    """What every format says about the class map, for clients that read only the body."""
    height, width = segmented.class_map.shape
    return {
        "X-Model-Version": str(segmented.model_version),
        "X-Image-Size": f"{height}x{width}",
        "X-Classes-Present": ",".join(map(str, segmented.present)),
    }


def server_timing(timings: Timings) -> str:
    """The W3C ``Server-Timing`` header: browsers' developer tools show it."""
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in timings.model_dump().items())


def json_answer(segmented: Segmented, model: str, timings: Timings) -> SegmentAnswer:
    """``format=json``: classes present with their pixel counts, and the run-length map."""
    class_map, counts = segmented.class_map, segmented.counts
    names = segmented.metadata.class_names
    height, width = class_map.shape
    present = [
        ClassPresence(
            id=i,
            name=names[i],
            pixels=int(counts[i]),
            fraction=round(int(counts[i]) / class_map.size, 6),
        )
        for i in segmented.present
    ]
    return SegmentAnswer(
        model=model,
        model_version=segmented.model_version,
        height=height,
        width=width,
        class_names=list(names),
        classes_present=present,
        class_map_rle=RunLength(**images.run_length(class_map)),
        timings_ms=Timings(**{k: round(v, 2) for k, v in timings.model_dump().items()}),
    )
