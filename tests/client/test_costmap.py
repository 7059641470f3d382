"""Ground projection with synthetic camera geometry, pure numpy (no server): scenes are
rendered by casting each pixel's ray onto the ground, then projected back into costmaps."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from client.camera import Camera, CameraMount
from client.costmap import (
    FREE,
    INSCRIBED,
    LETHAL,
    UNKNOWN,
    Costmap,
    CostmapSpec,
    GroundProjector,
)
from client.costmap_picture import costmap_sheet, draw_costmap
from client.navigation import DrivingPolicy
from client.results import ModelMetadata

NAMES = ("floor", "wall", "person", "rug")
FLOOR, WALL, PERSON, RUG = range(4)
METADATA = ModelMetadata(NAMES, np.zeros((4, 3), np.uint8), (128, 128), 16, model_version=1)
ON_FLOOR = DrivingPolicy.from_metadata(METADATA, traversable=["floor", "rug"])


def ground_hits(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, hits): where each pixel's ray meets the ground; ``hits`` is False above the
    horizon. Undistorts first when the lens has distortion."""
    height, width = camera.image_size
    v, u = np.mgrid[:height, :width].astype(np.float64)
    pixels = np.stack([u.ravel(), v.ravel()], axis=1)
    if camera.distortion is not None:
        pixels = cv2.undistortPoints(pixels[:, None], camera.K, camera.distortion, P=camera.K)
        pixels = pixels[:, 0]
    rays = camera.mount.rotation @ np.linalg.solve(camera.K, np.c_[pixels, np.ones(len(pixels))].T)
    down = rays[2] < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(down, -camera.mount.height_m / rays[2], np.nan)
    x = camera.mount.x_m + scale * rays[0]
    y = camera.mount.y_m + scale * rays[1]
    shape = (height, width)
    return x.reshape(shape), y.reshape(shape), down.reshape(shape)


def occupancy_index(costmap: Costmap, x: float, y: float) -> tuple[int, int]:
    """OccupancyGrid's own rule, written out: data[row * width + column], column along x."""
    column = math.floor((x - costmap.origin[0]) / costmap.resolution)
    row = math.floor((y - costmap.origin[1]) / costmap.resolution)
    return row, column


# Each pixel sees at most 0.1 m of floor up to 4.5 m ahead: marks that size cannot fall between
# two pixels (a far-off mark smaller than a pixel's footprint is simply not seen).
MOUNTED = CameraMount(height_m=0.5, pitch_deg=12.0, roll_deg=3.0, x_m=0.2, y_m=-0.05)
POINTS = [(1.0, 0.0), (2.0, 0.6), (3.0, -0.8), (4.5, 0.4), (2.5, 1.0)]
MARK = 0.15  # half the side of each square mark, metres


@pytest.mark.parametrize(
    "camera",
    [
        Camera.from_fov(60.0, (480, 640), MOUNTED),
        Camera.from_fov(60.0, (480, 640), MOUNTED, distortion=(-0.25, 0.06, 0.001, 0.0)),
    ],
    ids=["pinhole", "distorted"],
)
def test_known_ground_points_land_in_their_cells(camera):
    # Square marks (tape on the floor) of an obstacle class centred on known points.
    x, y, hits = ground_hits(camera)
    class_map = np.full(camera.image_size, FLOOR, np.uint8)
    for px, py in POINTS:
        class_map[hits & (np.abs(x - px) <= MARK) & (np.abs(y - py) <= MARK)] = PERSON
    spec = CostmapSpec(0.1, ahead_m=6.0, side_m=3.0, inflation_m=0.0)
    costmap = GroundProjector(camera, ON_FLOOR, spec).project(class_map, stamp=1.0)

    assert costmap.data.dtype == np.int8 and costmap.data.flags.c_contiguous
    assert costmap.data.shape == (60, 60) and costmap.origin == (0.0, -3.0)
    assert set(np.unique(costmap.data)) <= {UNKNOWN, FREE, LETHAL}
    rows, columns = np.nonzero(costmap.data == LETHAL)
    lethal = np.c_[(columns + 0.5) * 0.1, -3.0 + (rows + 0.5) * 0.1]  # cell centres (x, y)
    for px, py in POINTS:
        row, column = occupancy_index(costmap, px, py)
        assert costmap.data[row, column] == LETHAL, (px, py)
        assert costmap.cell(px, py) == (row, column)
        near = np.abs(lethal - (px, py)).max(axis=1) <= MARK + 0.1  # the mark, ± one cell
        centroid = lethal[near].mean(axis=0)
        assert np.abs(centroid - (px, py)).max() <= 0.1, (px, py, centroid)
    # Nothing lethal away from the marks.
    distance = np.abs(lethal[:, None, :] - np.array(POINTS)[None]).max(axis=2).min(axis=1)
    assert distance.max() <= MARK + 0.1
    assert (costmap.data == FREE).sum() > 1000


@pytest.mark.parametrize("obstacle", ["wall", "person"])
def test_an_obstacle_far_ahead_is_lethal_at_its_distance(obstacle):
    # 5 m ahead one pixel row spans 0.09 m of floor, less than a cell: the map can be exact.
    camera = Camera.from_fov(60.0, (480, 640), CameraMount(height_m=0.5, pitch_deg=8.0))
    x, _, hits = ground_hits(camera)
    # A vertical face across the whole view 5 m ahead: every pixel whose ray would meet the
    # floor beyond it (or never) sees the face instead.
    class_map = np.where(hits & (x < 5.0), FLOOR, NAMES.index(obstacle)).astype(np.uint8)
    spec = CostmapSpec(0.1, ahead_m=8.0, side_m=2.0, inflation_m=0.2)
    costmap = GroundProjector(camera, ON_FLOOR, spec).project(class_map, stamp=0.0)
    row = occupancy_index(costmap, 5.0, 0.0)[0]
    ahead = costmap.data[row]
    first_lethal = int(np.argmax(ahead == LETHAL))
    assert abs(first_lethal - 5.0 / 0.1) <= 1
    assert (ahead[first_lethal:] == LETHAL).all()  # the face hides what is behind it
    inflated = ahead[first_lethal - 2 : first_lethal]  # 0.2 m in front: Nav2's inscribed cost
    assert (inflated == INSCRIBED).all()
    seen = ahead[: first_lethal - 2]
    assert (seen[seen != UNKNOWN] == FREE).all() and (seen == FREE).sum() > 30


def test_cells_beyond_the_horizon_and_behind_the_camera_are_unknown():
    # Looking slightly up: the upper image is above the horizon, all obstacle (a wall, the
    # sky). Cells behind the camera would fold back into that part of the image through the
    # homography; none may pick it up.
    camera = Camera.from_fov(90.0, (120, 160), CameraMount(height_m=0.5, pitch_deg=-5.0))
    _, _, hits = ground_hits(camera)
    assert 0 < hits.sum() < hits.size  # the horizon is in the image
    class_map = np.where(hits, FLOOR, WALL).astype(np.uint8)
    spec = CostmapSpec(0.1, ahead_m=8.0, side_m=4.0, behind_m=2.0, inflation_m=0.3)
    projector = GroundProjector(camera, ON_FLOOR, spec)
    costmap = projector.project(class_map, stamp=0.0)

    assert LETHAL not in costmap.data and INSCRIBED not in costmap.data
    behind = costmap.cell_centres()[0] < 0
    assert (costmap.data[behind] == UNKNOWN).all()
    assert projector.behind_camera[behind].all()
    assert costmap.cost_at(4.0, 0.0) == FREE
    assert costmap.cost_at(1.0, 3.9) == UNKNOWN  # outside the field of view, off to the left
    # The same scene with the floor everywhere, above the horizon too, gives the same map.
    floor_only = projector.project(np.zeros_like(class_map), stamp=0.0)
    np.testing.assert_array_equal(floor_only.data, costmap.data)


def test_low_confidence_cells_are_unknown():
    camera = Camera.from_fov(90.0, (120, 160), CameraMount(height_m=0.4, pitch_deg=20.0))
    confidence = np.full((120, 160), 250, np.uint8)
    confidence[:, :80] = 100  # the left half of the image, the vehicle's left, is unsure
    policy = DrivingPolicy.from_metadata(METADATA, traversable=["floor"], min_confidence=128)
    spec = CostmapSpec(0.1, ahead_m=4.0, side_m=2.0, inflation_m=0.0)
    costmap = GroundProjector(camera, policy, spec).project(
        np.zeros((120, 160), np.uint8), confidence, stamp=0.0
    )
    assert costmap.cost_at(2.0, 0.5) == UNKNOWN
    assert costmap.cost_at(2.0, -0.5) == FREE


def test_inflation_leaves_unknown_cells_unknown():
    # Nav2's inflation layer (inflate_unknown: false by default) inflates into free cells only.
    camera = Camera.from_fov(90.0, (120, 160), CameraMount(height_m=0.4, pitch_deg=20.0))
    x, _, hits = ground_hits(camera)
    class_map = np.where(hits & (x < 2.0), FLOOR, WALL).astype(np.uint8)
    confidence = np.full((120, 160), 250, np.uint8)
    confidence[:, :80] = 100  # the vehicle's left is unsure, beside the lethal wall on its right
    policy = DrivingPolicy.from_metadata(METADATA, traversable=["floor"], min_confidence=128)
    spec = CostmapSpec(0.1, ahead_m=4.0, side_m=2.0, inflation_m=0.3)
    inflated = GroundProjector(camera, policy, spec).project(class_map, confidence, stamp=0.0)
    plain = GroundProjector(camera, policy, dataclasses.replace(spec, inflation_m=0.0))
    not_inflated = plain.project(class_map, confidence, stamp=0.0)

    assert INSCRIBED in inflated.data and LETHAL in inflated.data
    np.testing.assert_array_equal(inflated.data == UNKNOWN, not_inflated.data == UNKNOWN)


@pytest.mark.parametrize(
    ("choice", "lethal"),
    [
        ({"traversable": ["floor", "rug"]}, {"wall", "person"}),
        ({"traversable": ["floor"]}, {"wall", "person", "rug"}),
        ({"obstacles": ["person"]}, {"person"}),
    ],
)
def test_traversable_and_obstacle_classes_come_by_name_from_the_metadata(choice, lethal):
    camera = Camera.from_fov(90.0, (60, 80), CameraMount(height_m=0.4, pitch_deg=25.0))
    projector = GroundProjector(
        camera,
        DrivingPolicy.from_metadata(METADATA, **choice),
        CostmapSpec(0.1, ahead_m=3.0, side_m=1.5, inflation_m=0.0),
    )
    for class_id, name in enumerate(METADATA.class_names):
        class_map = np.full((60, 80), class_id, np.uint8)
        expected = LETHAL if name in lethal else FREE
        assert projector.project(class_map, stamp=0.0).cost_at(1.5, 0.0) == expected, name
    with pytest.raises(ValueError, match="no class 'grass'; its classes: floor, wall"):
        DrivingPolicy.from_metadata(METADATA, traversable=["grass"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CameraMount(height_m=0.0), "height_m=0.0"),
        (lambda: CameraMount(height_m=-0.3), "height_m=-0.3"),
        (lambda: CameraMount(pitch_deg=95.0), "pitch_deg=95.0"),
        (lambda: CameraMount(roll_deg=float("nan")), "roll_deg=nan"),
        (
            lambda: Camera.from_fov(60.0, (480, 640), CameraMount(pitch_deg=-40.0)),
            "pitch_deg=-40.0, roll_deg=0.0: the horizon lies below the image",
        ),
        (
            lambda: Camera(np.diag([500.0, 0.0, 1.0]), (480, 640), CameraMount()),
            r"K=\[\[500.0, 0.0, 0.0\], \[0.0, 0.0, 0.0\], \[0.0, 0.0, 1.0\]\] is not invertible",
        ),
        (lambda: Camera(np.eye(2), (480, 640), CameraMount()), "expected a finite 3×3"),
        (
            lambda: Camera(
                np.array([[500, 0, 320], [0, 500, 240], [1, 0, 1.0]]), (480, 640), CameraMount()
            ),
            "last row must be",
        ),
        (lambda: Camera.from_fov(0.0, (480, 640), CameraMount()), "hfov_deg=0.0"),
        (lambda: Camera.from_fov(90.0, (0, 640), CameraMount()), r"image_size=\(0, 640\)"),
        (
            lambda: Camera.from_fov(90.0, (480, 640), CameraMount(), distortion=(0.1, 0.2, 0.0)),
            r"distortion=\[0.1, 0.2, 0.0\]",
        ),
        (lambda: CostmapSpec(resolution_m=0.0), "resolution_m=0.0"),
        (lambda: CostmapSpec(resolution_m=-0.05), "resolution_m=-0.05"),
        (lambda: CostmapSpec(side_m=-1.0), "side_m=-1.0"),
        (lambda: CostmapSpec(inflation_m=float("inf")), "inflation_m=inf"),
        (
            lambda: CostmapSpec(resolution_m=0.0001),
            r"resolution_m=0.0001 over 10 m × 8 m makes 100000 × 80000 = 8,000,000,000 cells",
        ),
    ],
)
def test_impossible_parameters_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_maps_of_the_wrong_size_or_type_are_named():
    camera = Camera.from_fov(90.0, (60, 80), CameraMount())
    projector = GroundProjector(camera, ON_FLOOR, CostmapSpec(0.1, ahead_m=3.0, side_m=1.0))
    with pytest.raises(ValueError, match=r"class_map is uint8 \(48, 64\).*60×80"):
        projector.project(np.zeros((48, 64), np.uint8), stamp=0.0)
    with pytest.raises(ValueError, match=r"confidence is float32 \(60, 80\)"):
        projector.project(np.zeros((60, 80), np.uint8), np.zeros((60, 80), np.float32), stamp=0)
    costmap = projector.project(np.zeros((60, 80), np.uint8), stamp=0.0)
    with pytest.raises(ValueError, match=r"point \(5.0, 0.0\) m is outside the grid"):
        costmap.cell(5.0, 0.0)


def test_the_picture_puts_forward_up_and_left_on_the_left():
    data = np.full((40, 60), FREE, np.int8)  # 2 m across (rows), 3 m ahead (columns)
    data[30:, 50:] = LETHAL  # far ahead (large x), on the left (large y)
    costmap = Costmap(data, 0.05, (0.0, -1.0), stamp=0.0)
    picture = draw_costmap(costmap, scale=2)
    assert picture.shape == (120, 80, 3)
    red = (picture[..., 2] > 150) & (picture[..., 1] < 80)
    rows, columns = np.nonzero(red)
    assert rows.max() < 25 and columns.max() < 25  # top-left corner
    sheet = costmap_sheet([(np.zeros((48, 64, 3), np.uint8), costmap)] * 2, row_height=96)
    assert sheet.shape[0] == 2 * (96 + 4) and sheet.shape[1] == 128 + 64
