"""Boundary ("trimap") scores: the confusion of the pixels near true class edges only.

Mean IoU over whole images is dominated by the interiors of large regions; an obstacle's
outline, where a planner stops the car, is a thin band that barely moves it. The trimap
measure (Kohli et al. 2009; DeepLab's papers plot it against the band's width) scores only
the pixels within ``width`` pixels of a true edge.

A pixel is an *edge pixel* when one of its 8 neighbours has another label (both sides of an
edge are marked; ignored pixels count as a label of their own, so VOC's 255 outlines, which
sit on the true edges, mark them too). The band is every pixel whose Euclidean distance to
the nearest edge pixel is at most ``width`` (OpenCV's exact distance transform); ignored
pixels inside it are left out, as everywhere else.

    band = edge_band(labels, width=3)                 # bool [H, W]
    confusion = trimap_confusion(labels, predicted, num_classes=7, width=3)
    scores_from_confusion(confusion)["mean_iou"]      # the trimap mean IoU
"""

from __future__ import annotations

import cv2
import numpy as np

from training.data.voc import IGNORE_LABEL

_NEIGHBOURS = np.ones((3, 3), np.uint8)


def edge_band(labels: np.ndarray, width: int) -> np.ndarray:
    """bool ``[H, W]``: the pixels within ``width`` pixels of a pixel whose 8-neighbourhood
    holds another label. ``labels``: integer ``[H, W]`` in 0–255."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected labels of shape [H, W], got {labels.shape}")
    if width < 0:
        raise ValueError(f"width must be at least 0 pixels, got {width}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must lie in 0–255, got {labels.min()}–{labels.max()}")
    labels = labels.astype(np.uint8)
    # Outside the image counts as no neighbour (OpenCV's default border for both operations).
    edges = cv2.dilate(labels, _NEIGHBOURS) != cv2.erode(labels, _NEIGHBOURS)
    if not edges.any():
        return edges
    distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= width


def trimap_confusion(
    labels: np.ndarray,
    predicted: np.ndarray,
    *,
    num_classes: int,
    width: int,
    ignore_label: int = IGNORE_LABEL,
) -> np.ndarray:
    """float64 ``[C, C]`` confusion (rows true, columns predicted) of the pixels in
    :func:`edge_band`, ``labels`` and ``predicted`` integer ``[H, W]`` or ``[N, H, W]``.

    Score it with :func:`training.learning.metrics.scores_from_confusion`; sum it over images."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} differ")
    if labels.ndim == 2:
        labels, predicted = labels[None], predicted[None]
    confusion = np.zeros((num_classes, num_classes))
    for label, prediction in zip(labels, predicted, strict=True):
        counted = edge_band(label, width) & (label != ignore_label) & (label < num_classes)
        cells = label[counted].astype(np.int64) * num_classes + prediction[counted]
        confusion += np.bincount(cells, minlength=num_classes * num_classes).reshape(
            num_classes, num_classes
        )
    return confusion
