"""A small reference adapter from class maps to what a navigation planner needs.

The book's use case: an RC car drives safely or adventurously. A policy names the classes
that block the way and a risk preference; the class map (and optionally the confidence map)
becomes a dilated obstacle mask, and the mask becomes free space per image column:

    >>> class_map = np.zeros((6, 5), np.uint8)
    >>> class_map[1:3, 2] = 15  # a person ahead, middle column
    >>> policy = DrivingPolicy.voc(risk="adventurous", margin_px=0)
    >>> free = free_space(obstacle_mask(class_map, policy))
    >>> free.tolist()  # rows from the bottom to the first obstacle; 6 = column free
    [6, 6, 3, 6, 6]
    >>> steering_hint(free, window=1)  # ties go to the column nearest the centre
    1

Risk preference (confidence is uint8, max softmax probability × 255, as the server sends it):

- "safe": the margin is doubled, and pixels below `min_confidence` are obstacles whatever
  their class — the car does not drive where the model is unsure.
- "adventurous": only obstacle pixels with confidence ≥ `min_confidence` block; margin as given.

Without a confidence map both preferences use the class map alone (safe still doubles the margin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from client.palette import VOC_CLASS_NAMES
from client.results import ModelMetadata

RiskPreference = Literal["safe", "adventurous"]

__all__ = ["DrivingPolicy", "RiskPreference", "free_space", "obstacle_mask", "steering_hint"]


@dataclass(frozen=True)
class DrivingPolicy:
    """Which classes block the car, how far to stay away from them, and how much to risk."""

    obstacle_classes: frozenset[int]
    margin_px: int = 8
    risk: RiskPreference = "safe"
    min_confidence: int = 128

    def __post_init__(self) -> None:
        # Accept any iterable of ids, but keep the policy hashable and immutable.
        object.__setattr__(self, "obstacle_classes", frozenset(self.obstacle_classes))
        if self.risk not in ("safe", "adventurous"):
            raise ValueError(f"risk must be 'safe' or 'adventurous', got {self.risk!r}")
        if self.margin_px < 0:
            raise ValueError(f"margin_px must be >= 0, got {self.margin_px}")
        if not 0 <= self.min_confidence <= 255:
            raise ValueError(f"min_confidence must be in [0, 255], got {self.min_confidence}")

    @classmethod
    def voc(
        cls, risk: RiskPreference = "safe", margin_px: int = 8, min_confidence: int = 128
    ) -> DrivingPolicy:
        """Every VOC class except background (0) is an obstacle: people, pets, cars, chairs…
        (For a model of other classes: :meth:`from_metadata`.)"""
        return cls(frozenset(range(1, len(VOC_CLASS_NAMES))), margin_px, risk, min_confidence)

    @classmethod
    def from_metadata(
        cls,
        metadata: ModelMetadata | Sequence[str],
        *,
        traversable: Iterable[str] | None = None,
        obstacles: Iterable[str] | None = None,
        risk: RiskPreference = "safe",
        margin_px: int = 8,
        min_confidence: int = 128,
    ) -> DrivingPolicy:
        """A policy by class name, for the model's own classes (``client.metadata()``, or
        its class names): give ``traversable`` (every other class is an obstacle: the safe
        reading of a world where anything unknown may be in the way) or ``obstacles``.

        >>> names = ("background", "floor", "wall", "pet", "cable")
        >>> sorted(DrivingPolicy.from_metadata(names, traversable=["floor"]).obstacle_classes)
        [0, 2, 3, 4]
        >>> DrivingPolicy.from_metadata(names, obstacles=["rug"])
        Traceback (most recent call last):
          ...
        ValueError: the model has no class 'rug'; its classes: background, floor, wall, pet, cable
        """
        names = list(getattr(metadata, "class_names", metadata))
        if (traversable is None) == (obstacles is None):
            raise ValueError("give either traversable= or obstacles= (class names), not both")
        chosen = list(traversable if traversable is not None else obstacles)
        unknown = [name for name in chosen if name not in names]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            raise ValueError(f"the model has no class {listed}; its classes: {', '.join(names)}")
        ids = {names.index(name) for name in chosen}
        blocking = set(range(len(names))) - ids if traversable is not None else ids
        return cls(frozenset(blocking), margin_px, risk, min_confidence)

    @property
    def effective_margin(self) -> int:
        """The dilation radius in pixels: doubled when driving safely."""
        return 2 * self.margin_px if self.risk == "safe" else self.margin_px


def obstacle_mask(
    class_map: np.ndarray, policy: DrivingPolicy, confidence: np.ndarray | None = None
) -> np.ndarray:
    """H×W bool mask of where the car must not go, dilated by the policy's margin.

    `confidence` (uint8 H×W) is optional; with None only the class map decides.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2 or not np.issubdtype(class_map.dtype, np.integer):
        raise ValueError(
            f"class_map must be an H×W integer array, got {class_map.dtype} {class_map.shape}"
        )
    obstacles = np.isin(class_map, list(policy.obstacle_classes))
    if confidence is not None:
        confidence = np.asarray(confidence)
        if confidence.shape != class_map.shape or confidence.dtype != np.uint8:
            raise ValueError(
                f"confidence must be uint8 of the class map's shape {class_map.shape}, "
                f"got {confidence.dtype} {confidence.shape}"
            )
        sure = confidence >= policy.min_confidence
        obstacles = obstacles | ~sure if policy.risk == "safe" else obstacles & sure

    radius = policy.effective_margin
    if radius == 0:
        return obstacles
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(obstacles.astype(np.uint8), kernel).astype(bool)


def free_space(obstacles: np.ndarray) -> np.ndarray:
    """Per column, the rows free from the bottom up to (not including) the first obstacle.

    The bottom of the image is just in front of the car, so this is how far it can drive
    straight in each column; H means the column is free. Returns an int array of length W.
    """
    obstacles = np.asarray(obstacles)
    if obstacles.ndim != 2 or obstacles.dtype != bool:
        raise ValueError(
            f"obstacles must be an H×W bool mask, got {obstacles.dtype} {obstacles.shape}"
        )
    from_bottom = obstacles[::-1]
    first = from_bottom.argmax(axis=0)  # index of the first True from the bottom (0 if none)
    return np.where(from_bottom.any(axis=0), first, obstacles.shape[0]).astype(np.int64)


def steering_hint(free: np.ndarray, window: int = 9) -> int:
    """The column to head for: most free space, averaged over `window` neighbouring columns.

    Averaging keeps the car out of one-pixel gaps; ties go to the column nearest the centre
    so equal options mean straight ahead. Check `free[column] > 0` before driving.
    """
    free = np.asarray(free)
    if free.ndim != 1 or free.size == 0 or window < 1:
        raise ValueError(
            f"free must be a non-empty 1-D array and window >= 1, got {free.shape} and {window}"
        )
    k = min(window, free.size)
    # Edge padding so the image borders are not penalized; sums (not means) stay exact for ties.
    padded = np.pad(free.astype(np.int64), (k // 2, k - 1 - k // 2), mode="edge")
    sums = np.convolve(padded, np.ones(k, np.int64), mode="valid")
    best = np.flatnonzero(sums == sums.max())
    centre = (free.size - 1) / 2
    return int(best[np.argmin(np.abs(best - centre))])
