"""Edge client for the segmentation model server: frames in, per-pixel class maps out.

Runs on the RC vehicle's computer with grpcio, numpy and OpenCV only (never TensorFlow), and
talks to TensorFlow Serving or the embedded server over TF Serving's gRPC API:

    from client import SegmentationClient, SegmentationStream, open_source

    with SegmentationClient("server:8500") as client, open_source(0) as camera:
        for result in SegmentationStream(client, camera):
            planner.update(result.segmentation.class_map)

Modules: ``contract`` (the SavedModel's signature and tensor names, ports, version folders),
``segmentation_client`` (calls), ``channel`` (gRPC's load balancing, health checks and
retries over several servers), ``results`` (what calls return), ``stream`` (camera
streaming), ``wire`` (the protocol), ``errors``, ``overlay`` and ``palette`` (pictures),
``navigation`` (obstacles and free space for planners), ``camera`` and ``costmap`` (ground
costmaps in metres), ``freshness`` (fresh maps or none), ``recording`` (drives as MCAP),
``bench_report`` (latency statistics), ``onboard`` (the exported model run on the vehicle:
TFLite or ONNX) and ``failover`` (the server first, the onboard model when it does not
answer); ``python -m client`` has the ``bench``, ``view`` and ``record`` commands.
"""

from client.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidFrame,
    InvalidRequest,
    InvalidResponse,
    ModelNotFound,
    RequestTooLarge,
    ServerError,
    ServerUnavailable,
    SignatureMismatch,
    TlsMismatch,
)
from client.failover import FailoverSegmenter
from client.onboard import OnboardModelError, OnboardSegmenter
from client.overlay import draw_legend, overlay
from client.palette import VOC_CLASS_NAMES, colorize, voc_colormap
from client.segmentation_client import (
    ModelMetadata,
    RetryPolicy,
    Segmentation,
    SegmentationClient,
    StageTimings,
)
from client.stream import (
    LatestFrameSource,
    SegmentationStream,
    Segmenter,
    SourceError,
    StreamResult,
    open_source,
)

__all__ = [
    "VOC_CLASS_NAMES",
    "ClientError",
    "DeadlineExceeded",
    "FailoverSegmenter",
    "InvalidFrame",
    "InvalidRequest",
    "InvalidResponse",
    "LatestFrameSource",
    "ModelMetadata",
    "ModelNotFound",
    "OnboardModelError",
    "OnboardSegmenter",
    "RequestTooLarge",
    "RetryPolicy",
    "Segmentation",
    "SegmentationClient",
    "SegmentationStream",
    "Segmenter",
    "ServerError",
    "ServerUnavailable",
    "SignatureMismatch",
    "SourceError",
    "StageTimings",
    "StreamResult",
    "TlsMismatch",
    "colorize",
    "draw_legend",
    "open_source",
    "overlay",
    "voc_colormap",
]
