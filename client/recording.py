"""Drives recorded as MCAP with Foxglove's well-known schemas, so Foxglove (and any MCAP tool)
opens them: the camera frames, the class maps and confidence, the costmaps and the latency of
every frame, each stamped with its frame's capture time.

    with DriveRecorder("drive.mcap", metadata=client.metadata()) as recorder:
        for result in SegmentationStream(client, camera, confidence=True):
            costmap = projector.project(...) if result.ok else None
            recorder.write(result, costmap)

Channels (protobuf encoding, schemas from ``foxglove-schemas-protobuf``; the latency is JSON):

| topic | schema |
| --- | --- |
| ``/camera/image/compressed`` | ``foxglove.CompressedImage`` (JPEG), every frame |
| ``/segmentation/overlay/compressed`` | ``foxglove.CompressedImage``: class colours blended |
| ``/segmentation/class_map`` | ``foxglove.RawImage`` mono8: class ids |
| ``/segmentation/confidence`` | ``foxglove.RawImage`` mono8: max softmax × 255 |
| ``/costmap`` | ``foxglove.Grid``: int8 field ``cost`` (OccupancyGrid values), ``base_link`` |
| ``/latency`` | JSON: capture → class map and each stage, in ms; failed frames with their error |

A message's log time and its own ``timestamp`` are the frame's capture time (Unix ns); its
publish time is when the answer came back, so publish − log is the frame's latency. The model's
class names and palette are in the file's ``model`` metadata record.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Grid_pb2 import Grid
from foxglove_schemas_protobuf.PackedElementField_pb2 import PackedElementField
from foxglove_schemas_protobuf.Pose_pb2 import Pose
from foxglove_schemas_protobuf.Quaternion_pb2 import Quaternion
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from foxglove_schemas_protobuf.Vector2_pb2 import Vector2
from foxglove_schemas_protobuf.Vector3_pb2 import Vector3
from google.protobuf.timestamp_pb2 import Timestamp
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import Writer
from mcap_protobuf.schema import register_schema

from client.costmap import Costmap
from client.overlay import overlay
from client.results import ModelMetadata
from client.stream import StreamResult

__all__ = [
    "CLASS_MAP_TOPIC",
    "CONFIDENCE_TOPIC",
    "COSTMAP_TOPIC",
    "IMAGE_TOPIC",
    "LATENCY_SCHEMA",
    "LATENCY_TOPIC",
    "OVERLAY_TOPIC",
    "DriveRecorder",
]

IMAGE_TOPIC = "/camera/image/compressed"
OVERLAY_TOPIC = "/segmentation/overlay/compressed"
CLASS_MAP_TOPIC = "/segmentation/class_map"
CONFIDENCE_TOPIC = "/segmentation/confidence"
COSTMAP_TOPIC = "/costmap"
LATENCY_TOPIC = "/latency"
CAMERA_FRAME = "camera"

LATENCY_SCHEMA = {
    "title": "rc_segmentation.FrameLatency",
    "type": "object",
    "properties": {
        "frame": {"type": "integer", "description": "frame index from the source"},
        "ok": {"type": "boolean"},
        "latency_ms": {"type": "number", "description": "capture to class map in hand"},
        "capture_wait_ms": {"type": "number"},
        "encode_ms": {"type": "number"},
        "rpc_ms": {"type": "number"},
        "decode_ms": {"type": "number"},
        "model_version": {"type": "integer"},
        "error": {"type": "string"},
    },
}


class DriveRecorder:
    """Writes a drive to an MCAP file (zstd-compressed chunks): ``write`` one stream result
    (and its costmap) at a time, ``close`` (or leave the ``with`` block) to finish the file.

    ``metadata`` (the model's) gives the overlay its palette and is written into the file;
    ``jpeg_quality`` is for the frames and overlays.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        metadata: ModelMetadata | None = None,
        jpeg_quality: int = 85,
    ):
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={jpeg_quality}: must be between 0 and 100")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.metadata = metadata
        self.jpeg_quality = jpeg_quality
        self.counts: Counter[str] = Counter()
        # Capture stamps are time.monotonic(); MCAP wants Unix time. One offset for the file
        # keeps the spacing of frames exact.
        self._unix_offset_ns = time.time_ns() - time.monotonic_ns()
        self._file = self.path.open("wb")
        self._writer = Writer(self._file)
        self._writer.start(library="rc-segmentation client")
        self._channels: dict[str, int] = {}
        self._closed = False
        if metadata is not None:
            self.write_metadata(
                "model",
                {
                    "class_names": list(metadata.class_names),
                    "palette": np.asarray(metadata.palette).tolist(),
                    "model_version": metadata.model_version,
                },
            )

    def unix_ns(self, monotonic_seconds: float) -> int:
        """A ``time.monotonic()`` stamp as Unix nanoseconds, on this file's clock."""
        return round(monotonic_seconds * 1e9) + self._unix_offset_ns

    def write_metadata(self, name: str, values: dict[str, Any]) -> None:
        """A metadata record; values that are not strings are written as JSON."""
        self._writer.add_metadata(
            name, {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
        )

    def write(self, result: StreamResult, costmap: Costmap | None = None) -> None:
        """One frame: its image, and for an answered frame its class map, confidence (when
        the stream asked for it), overlay and costmap; its latency either way."""
        stamp = self.unix_ns(result.captured_at)
        answered = self.unix_ns(result.completed_at)
        timestamp = Timestamp()
        timestamp.FromNanoseconds(stamp)

        def log(topic: str, message: Any) -> None:
            self._log(topic, message, stamp, answered, result.index)

        log(IMAGE_TOPIC, self._jpeg(result.frame, timestamp))
        segmentation = result.segmentation
        if segmentation is not None:
            if self.metadata is not None:
                blended = overlay(
                    result.frame, segmentation.class_map, palette=self.metadata.palette
                )
                log(OVERLAY_TOPIC, self._jpeg(blended, timestamp))
            log(CLASS_MAP_TOPIC, _mono8(segmentation.class_map, timestamp))
            if segmentation.confidence is not None:
                log(CONFIDENCE_TOPIC, _mono8(segmentation.confidence, timestamp))
        if costmap is not None:
            log(COSTMAP_TOPIC, _grid(costmap, self.unix_ns(costmap.stamp)))
        log(LATENCY_TOPIC, _latency(result))

    def _jpeg(self, image: np.ndarray, timestamp: Timestamp) -> CompressedImage:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {image.dtype} {image.shape} frame as JPEG")
        return CompressedImage(
            timestamp=timestamp, frame_id=CAMERA_FRAME, data=data.tobytes(), format="jpeg"
        )

    def _log(self, topic: str, message: Any, log_ns: int, publish_ns: int, index: int) -> None:
        if topic not in self._channels:
            self._channels[topic] = self._register(topic, message)
        data = (
            json.dumps(message).encode()
            if isinstance(message, dict)
            else message.SerializeToString()
        )
        self._writer.add_message(
            channel_id=self._channels[topic],
            log_time=log_ns,
            publish_time=publish_ns,
            data=data,
            sequence=index & 0xFFFFFFFF,
        )
        self.counts[topic] += 1

    def _register(self, topic: str, message: Any) -> int:
        if isinstance(message, dict):
            schema = self._writer.register_schema(
                name=LATENCY_SCHEMA["title"],
                encoding=SchemaEncoding.JSONSchema,
                data=json.dumps(LATENCY_SCHEMA).encode(),
            )
            encoding = MessageEncoding.JSON
        else:
            schema = register_schema(self._writer, type(message))
            encoding = MessageEncoding.Protobuf
        return self._writer.register_channel(topic, encoding, schema)

    def close(self) -> None:
        """Writes the summary (channels, counts, indexes) and closes the file."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.finish()
            finally:
                self._file.close()

    def __enter__(self) -> DriveRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _mono8(image: np.ndarray, timestamp: Timestamp) -> RawImage:
    height, width = image.shape
    return RawImage(
        timestamp=timestamp,
        frame_id=CAMERA_FRAME,
        width=width,
        height=height,
        encoding="mono8",
        step=width,
        data=np.ascontiguousarray(image, np.uint8).tobytes(),
    )


def _grid(costmap: Costmap, stamp_ns: int) -> Grid:
    """The costmap as foxglove.Grid: rows along y, cells along x, as OccupancyGrid lays them."""
    timestamp = Timestamp()
    timestamp.FromNanoseconds(stamp_ns)
    x, y = costmap.origin
    return Grid(
        timestamp=timestamp,
        frame_id=costmap.frame_id,
        pose=Pose(position=Vector3(x=x, y=y, z=0.0), orientation=Quaternion(w=1.0)),
        column_count=costmap.width,
        cell_size=Vector2(x=costmap.resolution, y=costmap.resolution),
        row_stride=costmap.width,
        cell_stride=1,
        fields=[PackedElementField(name="cost", offset=0, type=PackedElementField.INT8)],
        data=np.ascontiguousarray(costmap.data, np.int8).tobytes(),
    )


def _latency(result: StreamResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "frame": result.index,
        "ok": result.ok,
        "latency_ms": result.age * 1000,
        "capture_wait_ms": result.capture_wait * 1000,
    }
    segmentation = result.segmentation
    if segmentation is not None:
        timings = segmentation.timings
        record.update(
            encode_ms=timings.encode * 1000,
            rpc_ms=timings.rpc * 1000,
            decode_ms=timings.decode * 1000,
            model_version=segmentation.model_version,
        )
    if result.error is not None:
        record["error"] = str(result.error)
    return record
