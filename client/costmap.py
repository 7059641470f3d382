"""Class maps onto the ground: a bird's-eye costmap in metres with ``nav_msgs/OccupancyGrid``
semantics, so a ROS 2 node can publish it as it is.

A cell is free (0) where the camera sees a traversable class, lethal (100) where it sees an
obstacle class, 99 where it sees free ground within ``inflation_m`` of a lethal cell (Nav2's
"inscribed" cost, 253 on its 0–255 scale), and unknown (−1) where the camera cannot tell:
outside its view, behind it or beyond its horizon, or where the model's confidence is below
the policy's ``min_confidence``. Unknown stays unknown near obstacles too (Nav2's inflation
layer with its default ``inflate_unknown: false``).
``data`` is row-major int8 of shape (height, width): row j, column i is the cell whose corner
nearest the origin is at ``origin + (i, j) · resolution`` in ``base_link`` (x forward, y left).

Projection is one homography per camera setup and one ``cv2.warpPerspective`` per frame
(nearest class, no per-pixel Python); a lens with distortion gets its sampling maps computed
once and one ``cv2.remap`` per frame instead.

    >>> from client.camera import Camera, CameraMount
    >>> from client.navigation import DrivingPolicy
    >>> camera = Camera.from_fov(90.0, (48, 64), CameraMount(height_m=0.5, pitch_deg=20.0))
    >>> policy = DrivingPolicy.from_metadata(["floor", "wall"], traversable=["floor"])
    >>> projector = GroundProjector(camera, policy, CostmapSpec(0.25, ahead_m=4.0, side_m=1.0))
    >>> class_map = np.zeros((48, 64), np.uint8)  # floor everywhere
    >>> costmap = projector.project(class_map, stamp=12.5)
    >>> costmap.data.shape, costmap.data.dtype, costmap.origin, costmap.stamp
    ((8, 16), dtype('int8'), (0.0, -1.0), 12.5)
    >>> costmap.cost_at(3.0, 0.0), costmap.cost_at(0.1, 0.0)  # seen floor; under the camera
    (0, -1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from client.camera import Camera
from client.navigation import DrivingPolicy

__all__ = [
    "FREE",
    "INSCRIBED",
    "LETHAL",
    "MAX_CELLS",
    "UNKNOWN",
    "Costmap",
    "CostmapSpec",
    "GroundProjector",
]

FREE, INSCRIBED, LETHAL, UNKNOWN = 0, 99, 100, -1
"""OccupancyGrid values: Nav2's free, inscribed-inflated and lethal costs, and unknown."""

MAX_CELLS = 10_000_000
"""Largest grid made (~10 bytes of working memory per cell and frame): 10 m × 10 m at 3 mm."""

_UNSEEN = 255  # warp border for class maps: the contract says 255 never appears in outputs
_MAX_SIDE = 32_767  # OpenCV's warps take at most SHRT_MAX pixels per side


@dataclass(frozen=True)
class CostmapSpec:
    """The grid: ``resolution_m`` per cell, ``ahead_m`` in front of the vehicle's origin,
    ``side_m`` to each side, ``behind_m`` behind it; lethal cells inflated by ``inflation_m``."""

    resolution_m: float = 0.05
    ahead_m: float = 10.0
    side_m: float = 4.0
    behind_m: float = 0.0
    inflation_m: float = 0.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.resolution_m) and self.resolution_m > 0):
            raise ValueError(f"resolution_m={self.resolution_m}: must be > 0 (metres per cell)")
        for name in ("ahead_m", "side_m", "behind_m", "inflation_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}: must be ≥ 0 metres")
        if self.ahead_m + self.behind_m <= 0 or self.side_m <= 0:
            raise ValueError(
                f"ahead_m={self.ahead_m}, behind_m={self.behind_m}, side_m={self.side_m}: "
                "the grid has no area"
            )
        width, height = self.shape[1], self.shape[0]
        if width * height > MAX_CELLS or max(width, height) > _MAX_SIDE:
            raise ValueError(
                f"resolution_m={self.resolution_m} over {self.ahead_m + self.behind_m:g} m × "
                f"{2 * self.side_m:g} m makes {width} × {height} = {width * height:,} cells, "
                f"more than the {MAX_CELLS:,} (and {_MAX_SIDE} per side) a frame may take: "
                "use a coarser resolution_m or smaller ahead_m/side_m/behind_m"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in cells: rows along y (right to left), columns along x."""

        def cells(metres: float) -> int:
            return max(1, math.ceil(metres / self.resolution_m - 1e-9))

        return cells(2 * self.side_m), cells(self.ahead_m + self.behind_m)

    @property
    def origin(self) -> tuple[float, float]:
        """(x, y) of the corner of cell (0, 0): behind the vehicle, on its right."""
        return (-self.behind_m or 0.0, -self.side_m)  # 0.0, not -0.0, with nothing behind


@dataclass(frozen=True, eq=False)
class Costmap:
    """One frame's grid in ``frame_id`` (OccupancyGrid's ``info`` and ``data``), stamped with
    the frame's capture time (``time.monotonic()`` seconds, as ``StreamResult.captured_at``)."""

    data: np.ndarray
    resolution: float
    origin: tuple[float, float]
    stamp: float
    frame_id: str = "base_link"

    @property
    def height(self) -> int:
        return self.data.shape[0]

    @property
    def width(self) -> int:
        return self.data.shape[1]

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the cell holding ground point (x, y); ValueError outside."""
        column = math.floor((x - self.origin[0]) / self.resolution)
        row = math.floor((y - self.origin[1]) / self.resolution)
        if not (0 <= row < self.height and 0 <= column < self.width):
            raise ValueError(
                f"point ({x}, {y}) m is outside the grid (x from {self.origin[0]} to "
                f"{self.origin[0] + self.width * self.resolution:g}, y from {self.origin[1]} to "
                f"{self.origin[1] + self.height * self.resolution:g})"
            )
        return row, column

    def cost_at(self, x: float, y: float) -> int:
        return int(self.data[self.cell(x, y)])

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every cell's centre, each (height, width)."""
        columns = self.origin[0] + (np.arange(self.width) + 0.5) * self.resolution
        rows = self.origin[1] + (np.arange(self.height) + 0.5) * self.resolution
        return np.meshgrid(columns, rows)


class GroundProjector:
    """Class maps (and confidence) of one camera setup to costmaps: the homography, the cells
    the camera cannot see and the cost table are computed once, here; ``project`` per frame."""

    def __init__(self, camera: Camera, policy: DrivingPolicy, spec: CostmapSpec | None = None):
        self.camera = camera
        self.policy = policy
        self.spec = spec = spec or CostmapSpec()
        height, width = spec.shape
        res, (ox, oy) = spec.resolution_m, spec.origin
        # Cell (column i, row j) → its centre's ground point → pixel: one 3×3 matrix.
        cell_to_ground = np.array([[res, 0, ox + res / 2], [0, res, oy + res / 2], [0, 0, 1]])
        self.cell_to_image = camera.homography @ cell_to_ground
        self._empty = Costmap(np.empty((height, width), np.int8), res, spec.origin, 0.0)
        x, y = self._empty.cell_centres()
        self.behind_camera = camera.depth(x, y) <= 1e-6
        self._maps = None if camera.distortion is None else self._distorted_maps(x, y)
        # Cost per class id; 255 (outside the image) is unknown.
        self._costs = np.full(256, FREE, np.int8)
        self._costs[sorted(policy.obstacle_classes)] = LETHAL
        self._costs[_UNSEEN] = UNKNOWN
        radius = math.ceil(spec.inflation_m / res - 1e-9)
        self._kernel = (
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            if radius > 0
            else None
        )

    def _distorted_maps(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each cell samples a distorted frame. Distortion polynomials fold far-off
        points back into view, so cells whose undistorted pixel is well outside the image
        (or behind the camera) sample nothing."""
        points = np.c_[x.ravel(), y.ravel()]
        pixels = self.camera.ground_to_image(points)
        ideal = np.c_[points, np.ones(len(points))] @ self.camera.homography.T
        with np.errstate(divide="ignore", invalid="ignore"):
            ideal = ideal[:, :2] / ideal[:, 2:]
        rows, columns = self.camera.image_size
        margin = 0.25 * np.array([columns, rows])
        outside = ((ideal < -margin) | (ideal > np.array([columns, rows]) + margin)).any(axis=1)
        pixels[outside | ~np.isfinite(pixels).all(axis=1)] = -1e6
        maps = pixels.astype(np.float32).reshape(*x.shape, 2)
        return maps[..., 0].copy(), maps[..., 1].copy()

    def project(
        self,
        class_map: np.ndarray,
        confidence: np.ndarray | None = None,
        *,
        stamp: float,
    ) -> Costmap:
        """The costmap of one frame's class map (uint8 H×W, the camera's image size) and
        optional confidence (uint8 H×W), stamped with the frame's capture time."""
        expected = self.camera.image_size
        for name, array in (("class_map", class_map), ("confidence", confidence)):
            if array is None:
                continue
            array = np.asarray(array)
            if array.dtype != np.uint8 or array.shape != expected:
                raise ValueError(
                    f"{name} is {array.dtype} {array.shape}; this camera is set up for uint8 "
                    f"maps of {expected[0]}×{expected[1]} (its image_size)"
                )
        classes = self._sample(class_map, _UNSEEN)
        costs = self._costs[classes]
        if confidence is not None:
            unsure = self._sample(confidence, 255) < self.policy.min_confidence
            costs[unsure] = UNKNOWN
        costs[self.behind_camera] = UNKNOWN
        if self._kernel is not None:
            lethal = (costs == LETHAL).view(np.uint8)
            near = cv2.dilate(lethal, self._kernel).view(bool)
            costs[near & (costs == FREE)] = INSCRIBED  # unknown stays unknown
        spec = self.spec
        return Costmap(costs, spec.resolution_m, spec.origin, stamp)

    def _sample(self, image: np.ndarray, border: int) -> np.ndarray:
        """The pixel each cell's centre falls on (nearest), ``border`` outside the image."""
        height, width = self.spec.shape
        if self._maps is not None:
            return cv2.remap(
                image, *self._maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )  # fmt: skip
        return cv2.warpPerspective(
            image,
            self.cell_to_image,
            (width, height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border,
        )
