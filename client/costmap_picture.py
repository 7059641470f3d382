"""Costmaps as pictures people can read: a bird's-eye view with forward up and the vehicle's
left on the left, and a sheet of frames beside their costmaps.

    >>> from client.costmap import Costmap
    >>> costmap = Costmap(np.zeros((40, 60), np.int8), 0.1, (0.0, -2.0), stamp=0.0)
    >>> draw_costmap(costmap).shape  # 6 m ahead (rows), 4 m across (columns), 4 px per cell
    (240, 160, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from client.costmap import FREE, INSCRIBED, LETHAL, UNKNOWN, Costmap
from client.overlay import side_by_side

__all__ = ["COST_COLOURS", "costmap_sheet", "draw_costmap"]

COST_COLOURS = {  # BGR, as OpenCV writes them
    FREE: (225, 235, 225),
    INSCRIBED: (60, 160, 250),
    LETHAL: (40, 40, 200),
    UNKNOWN: (110, 110, 110),
}


def draw_costmap(costmap: Costmap, *, scale: int = 4) -> np.ndarray:
    """BGR picture of ``costmap``, ``scale`` pixels per cell: forward up, left on the left,
    a line every metre, the vehicle's origin as a white triangle (where it is on the grid)."""
    colours = np.full((256, 3), 255, np.uint8)  # costs between the named ones: white
    for cost, colour in COST_COLOURS.items():
        colours[np.uint8(np.int8(cost))] = colour
    # data is (y, x) with y from right to left and x from back to front: transpose and flip.
    cells = costmap.data.view(np.uint8).T[::-1, ::-1]
    picture = cv2.resize(
        colours[cells],
        (cells.shape[1] * scale, cells.shape[0] * scale),
        interpolation=cv2.INTER_NEAREST,
    )
    pixels_per_metre = scale / costmap.resolution
    x_far = costmap.origin[0] + costmap.width * costmap.resolution
    y_left = costmap.origin[1] + costmap.height * costmap.resolution

    def pixel(x: float, y: float) -> tuple[int, int]:
        return round((y_left - y) * pixels_per_metre), round((x_far - x) * pixels_per_metre)

    for metre in range(int(np.ceil(costmap.origin[0])), int(x_far) + 1):
        row = pixel(metre, 0)[1]
        cv2.line(picture, (0, row), (picture.shape[1], row), (170, 170, 170), 1)
    for metre in range(int(np.ceil(costmap.origin[1])), int(y_left) + 1):
        column = pixel(0, metre)[0]
        cv2.line(picture, (column, 0), (column, picture.shape[0]), (170, 170, 170), 1)
    size = max(4, round(0.15 * pixels_per_metre))
    u, v = pixel(0.0, 0.0)
    triangle = np.array([[u, v - size], [u - size, v + size], [u + size, v + size]], np.int32)
    cv2.fillPoly(picture, [triangle], (255, 255, 255))
    cv2.polylines(picture, [triangle], True, (0, 0, 0), 1)
    return picture


def costmap_sheet(
    pairs: Sequence[tuple[np.ndarray, Costmap]], *, row_height: int = 240
) -> np.ndarray:
    """Rows of frame | costmap (each row ``row_height`` pixels), stacked; rows of different
    widths are padded on the right."""
    if not pairs:
        raise ValueError("costmap_sheet needs at least one (frame, costmap) pair")
    rows = []
    for frame, costmap in pairs:
        width = max(1, round(frame.shape[1] * row_height / frame.shape[0]))
        frame = cv2.resize(frame, (width, row_height), interpolation=cv2.INTER_AREA)
        rows.append(side_by_side(frame, draw_costmap(costmap)))
    width = max(row.shape[1] for row in rows)
    return np.vstack(
        [
            cv2.copyMakeBorder(row, 0, 4, 0, width - row.shape[1], cv2.BORDER_CONSTANT)
            for row in rows
        ]
    )
