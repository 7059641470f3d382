"""Where the camera sits and how it sees the ground: intrinsics, mounting, and the one
homography per camera setup that maps ground points (metres) to pixels.

Frames follow ROS (REP 103): the vehicle's ``base_link`` has x forward, y left, z up, its origin
on the ground under the vehicle's reference point; the camera's optical frame has x right, y
down, z forward. A camera 0.5 m up, looking straight ahead with a 90° horizontal field of view,
sees a point 5 m ahead 32 pixels below the image centre:

    >>> camera = Camera.from_fov(90.0, (480, 640), CameraMount(height_m=0.5, pitch_deg=0.0))
    >>> camera.ground_to_image([[5.0, 0.0]]).round(1).tolist()
    [[319.5, 271.5]]
    >>> Camera.from_fov(60.0, (480, 640), CameraMount(height_m=0.5, pitch_deg=-40.0))
    Traceback (most recent call last):
      ...
    ValueError: pitch_deg=-40.0, roll_deg=0.0: the horizon lies below the image ...

Lenses with distortion take OpenCV's coefficients (``distortion=(k1, k2, p1, p2[, k3…])``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DEFAULT_HFOV_DEG", "Camera", "CameraMount"]

DEFAULT_HFOV_DEG = 90.0
"""Horizontal field of view assumed when no K is given: a common wide RC-car camera."""

# Optical axes (x right, y down, z forward) in base_link (x forward, y left, z up), unrotated.
_OPTICAL_IN_VEHICLE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)  # what cv2.projectPoints accepts


@dataclass(frozen=True)
class CameraMount:
    """The camera's place on the vehicle: ``height_m`` above the ground, ``pitch_deg`` down
    from level (negative: up), ``roll_deg`` about the forward axis (positive: right side
    down), and its position ``x_m`` forward / ``y_m`` left of the vehicle's origin."""

    height_m: float = 0.25
    pitch_deg: float = 15.0
    roll_deg: float = 0.0
    x_m: float = 0.0
    y_m: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.height_m) and self.height_m > 0):
            raise ValueError(
                f"height_m={self.height_m}: the camera must be above the ground (metres > 0)"
            )
        for name in ("pitch_deg", "roll_deg"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -90 < value < 90):
                raise ValueError(f"{name}={value}: must be between -90 and 90 degrees")
        for name in ("x_m", "y_m"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)}: must be a finite number")

    @property
    def rotation(self) -> np.ndarray:
        """3×3 rotation taking optical-frame vectors into base_link (roll, then pitch)."""
        pitch, roll = math.radians(self.pitch_deg), math.radians(self.roll_deg)
        cp, sp, cr, sr = math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
        about_y = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])  # + tips x down
        about_x = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])  # + lifts y (left)
        return about_y @ about_x @ _OPTICAL_IN_VEHICLE

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x_m, self.y_m, self.height_m])


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera (``K``, optional OpenCV ``distortion``) for frames of ``image_size``
    (height, width), mounted on the vehicle. Checked when made: an impossible setup raises
    ValueError naming the parameter and its value."""

    K: np.ndarray
    image_size: tuple[int, int]
    mount: CameraMount
    distortion: np.ndarray | None = None

    def __post_init__(self) -> None:
        height, width = (int(v) for v in self.image_size)
        if height < 1 or width < 1 or (height, width) != tuple(self.image_size):
            raise ValueError(f"image_size={self.image_size}: expected (height, width) ≥ 1")
        object.__setattr__(self, "image_size", (height, width))
        K = np.asarray(self.K, np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise ValueError(f"K={K.tolist()}: expected a finite 3×3 matrix")
        if not np.allclose(K[2], (0, 0, 1)):
            raise ValueError(f"K={K.tolist()}: its last row must be [0, 0, 1]")
        determinant = float(np.linalg.det(K))
        if abs(determinant) < 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(
                f"K={K.tolist()} is not invertible (det={determinant:g}; fx and fy must be > 0)"
            )
        object.__setattr__(self, "K", K)
        if self.distortion is not None:
            coefficients = np.asarray(self.distortion, np.float64).ravel()
            if coefficients.size not in _DISTORTION_LENGTHS or not np.isfinite(coefficients).all():
                raise ValueError(
                    f"distortion={coefficients.tolist()}: expected OpenCV's 4, 5, 8, 12 or 14 "
                    "finite coefficients (k1, k2, p1, p2[, k3, …])"
                )
            object.__setattr__(self, "distortion", coefficients if coefficients.any() else None)
        self._check_sees_ground()

    @classmethod
    def from_fov(
        cls,
        hfov_deg: float,
        image_size: tuple[int, int],
        mount: CameraMount,
        *,
        vfov_deg: float | None = None,
        distortion: Sequence[float] | None = None,
    ) -> Camera:
        """K from the horizontal field of view (and the vertical one; default: square
        pixels), principal point at the image centre."""
        height, width = image_size
        for name, value in (("hfov_deg", hfov_deg), ("vfov_deg", vfov_deg)):
            if value is not None and not (math.isfinite(value) and 0 < value < 180):
                raise ValueError(f"{name}={value}: must be between 0 and 180 degrees")
        fx = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        fy = fx if vfov_deg is None else (height / 2) / math.tan(math.radians(vfov_deg) / 2)
        K = np.array([[fx, 0, (width - 1) / 2], [0, fy, (height - 1) / 2], [0, 0, 1]])
        return cls(K, image_size, mount, None if distortion is None else np.asarray(distortion))

    def _check_sees_ground(self) -> None:
        # Rays through the image corners: the ground is in view iff one of them points down
        # (a ray's height component is linear over the image, so its minimum is at a corner).
        height, width = self.image_size
        corners = np.array(
            [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
        )
        rays = self.mount.rotation @ np.linalg.solve(self.K, corners.T.astype(np.float64))
        if (rays[2] >= -1e-9).all():
            raise ValueError(
                f"pitch_deg={self.mount.pitch_deg}, roll_deg={self.mount.roll_deg}: the horizon "
                "lies below the image (every pixel looks above it), so the camera sees no ground"
            )

    @property
    def homography(self) -> np.ndarray:
        """3×3 map from ground points (x, y, 1) in base_link metres to undistorted pixels."""
        rotation_t = self.mount.rotation.T
        tx, ty, tz = self.mount.position
        ground_to_camera = rotation_t @ np.array([[1.0, 0, -tx], [0, 1.0, -ty], [0, 0, -tz]])
        return self.K @ ground_to_camera

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance along the optical axis of ground points (x, y): ≤ 0 means behind the
        camera, where the homography would fold points back into the image."""
        axis = self.mount.rotation[:, 2]
        tx, ty, tz = self.mount.position
        return axis[0] * (np.asarray(x) - tx) + axis[1] * (np.asarray(y) - ty) - axis[2] * tz

    def ground_to_image(self, points_xy: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Pixels (u, v), N×2 float, of ground points (x, y) in metres, with the lens's
        distortion when it has one. Points behind the camera come out as NaN."""
        points = np.asarray(points_xy, np.float64).reshape(-1, 2)
        behind = self.depth(points[:, 0], points[:, 1]) <= 0
        if self.distortion is None:
            projected = np.c_[points, np.ones(len(points))] @ self.homography.T
            with np.errstate(divide="ignore", invalid="ignore"):
                pixels = projected[:, :2] / projected[:, 2:]
        else:
            rotation_t = self.mount.rotation.T
            rvec, _ = cv2.Rodrigues(rotation_t)
            tvec = -rotation_t @ self.mount.position
            ground = np.c_[points, np.zeros(len(points))]
            pixels = cv2.projectPoints(ground, rvec, tvec, self.K, self.distortion)[0][:, 0]
        pixels[behind] = np.nan
        return pixels
