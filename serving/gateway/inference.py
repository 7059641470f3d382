"""The segment work, whatever format the answer takes: check the upload, call the model
server, and count the classes of the class map it returns. Blocking: it runs on the thread
pool. Rendering the answer is ``formats``' job."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from client import InvalidResponse, ModelMetadata, Segmentation, SegmentationClient
from serving.gateway import images
from serving.gateway.state import MetadataCache


@dataclass(frozen=True)
class Clock:
    """``time.perf_counter()`` stamps of one request: its start, the upload read and checked,
    the model server's answer."""

    started: float
    received: float
    answered: float


@dataclass(frozen=True)
class Segmented:
    """One upload's class map, with what every format renders from it."""

    data: bytes  # the upload as sent
    upright: np.ndarray | None  # BGR pixels turned by the EXIF tag, when it turns them
    class_map: np.ndarray
    model_version: int
    metadata: ModelMetadata  # of the version that answered
    counts: np.ndarray  # pixels per class id
    clock: Clock

    @property
    def present(self) -> list[int]:
        """The class ids the map holds, ascending."""
        return np.flatnonzero(self.counts).tolist()

    def picture_bgr(self) -> np.ndarray:
        """The image as the class map sees it (turned upright if the model saw it so)."""
        return self.upright if self.upright is not None else images.decode_bgr(self.data)


def check_upload(data: bytes, max_pixels: int) -> tuple[images.ImageInfo, np.ndarray | None]:
    """The header's format and size (UploadError 415/413/400 before any pixel is decoded),
    and the upright pixels of a photo whose EXIF tag turns it."""
    info = images.read_header(data, max_pixels)
    # The browser shows a phone photo turned by its EXIF tag, TensorFlow's decoder would not:
    # send the pixels turned as people see them.
    upright = images.decode_upright_bgr(data) if info.rotated else None
    return info, upright


def call_model(
    client: SegmentationClient, data: bytes, info: images.ImageInfo, upright: np.ndarray | None
) -> Segmentation:
    """The model server's class map: the bytes as sent (the server decodes them), or the
    upright pixels."""
    if upright is None:
        return client.segment_encoded(data, (info.height, info.width))
    return client.segment(upright, color="bgr")


def count_classes(class_map: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """Pixels per class id; InvalidResponse for an id the model does not have."""
    classes = len(metadata.class_names)
    counts = np.bincount(class_map.reshape(-1), minlength=classes)
    if len(counts) > classes:
        raise InvalidResponse(
            f"the class map holds id {len(counts) - 1}, the model has {classes} classes"
        )
    return counts


def segment_upload(
    data: bytes,
    *,
    client: SegmentationClient,
    metadata: MetadataCache,
    max_pixels: int,
    started: float,
) -> Segmented:
    """Checks ``data``, segments it, and counts what the class map holds."""
    info, upright = check_upload(data, max_pixels)
    received = time.perf_counter()
    result = call_model(client, data, info, upright)
    answered = time.perf_counter()
    model_metadata = metadata.get(result.model_version)
    return Segmented(
        data=data,
        upright=upright,
        class_map=result.class_map,
        model_version=result.model_version,
        metadata=model_metadata,
        counts=count_classes(result.class_map, model_metadata),
        clock=Clock(started, received, answered),
    )
