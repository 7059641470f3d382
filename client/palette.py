"""The PASCAL VOC palette and colorizing of class maps (pure numpy).

Shared by training (masks are written with this palette), serving and the edge client,
which colorizes class maps for people to look at.

    >>> voc_colormap()[1].tolist()  # aeroplane
    [128, 0, 0]
    >>> colorize(np.array([[0, 15]], np.uint8)).shape
    (1, 2, 3)
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

VOC_CLASS_NAMES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

ColorOrder = Literal["bgr", "rgb"]
"""Channel order of a frame: OpenCV gives BGR, the model and the palette are RGB."""

IGNORE_LABEL = 255
"""Mask value for object borders and unknown regions; excluded from losses and metrics."""


@cache
def _colormap() -> np.ndarray:
    # The VOC devkit's bit-interleaving construction: bits of the index spread over R, G, B
    # from the most significant bit down.
    indices = np.arange(256)
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (indices >> channel) & 1
            cmap[:, channel] |= (bit << (7 - shift)).astype(np.uint8)
        indices = indices >> 3
    cmap.setflags(write=False)
    return cmap


def voc_colormap() -> np.ndarray:
    """The (256, 3) uint8 VOC palette: entry i is the colour of class id i; 255 is the border."""
    return _colormap().copy()


def colorize(class_map: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Map an H×W array of class ids to an H×W×3 uint8 RGB image (VOC palette by default)."""
    palette = _colormap() if palette is None else np.asarray(palette, dtype=np.uint8)
    class_map = np.asarray(class_map)
    if class_map.max(initial=0) >= len(palette):
        raise ValueError(
            f"class map holds id {int(class_map.max())} but the palette has {len(palette)} colours"
        )
    return palette[class_map]
