"""Synthetic camera frames: a scene with shapes drifting across it, for benchmarks and tests
that need a camera where there is none (``python -m client bench --source synthetic``).

    >>> frames = synthetic_frames(3, size=(480, 640))
    >>> next(frames).shape
    (480, 640, 3)
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np


def synthetic_frames(
    count: int | None, *, size: tuple[int, int] = (480, 640), seed: int = 0
) -> Iterator[np.ndarray]:
    """``count`` BGR uint8 frames of ``size`` (H, W), or endless with None. Each frame is new
    memory (a camera does not reuse the buffer it gave you)."""
    height, width = size
    rng = np.random.default_rng(seed)
    # A floor/wall split with texture, and a few blobs moving at constant speeds.
    background = np.empty((height, width, 3), np.uint8)
    background[: height // 2] = (200, 180, 150)
    background[height // 2 :] = (90, 110, 120)
    background = cv2.add(background, rng.integers(0, 25, background.shape, dtype=np.uint8))
    blobs = [
        (
            rng.uniform(0, width),
            rng.uniform(height * 0.3, height),
            rng.uniform(-6, 6),
            rng.uniform(-2, 2),
            int(rng.integers(height // 12, height // 5)),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
        for _ in range(4)
    ]
    index = 0
    while count is None or index < count:
        frame = background.copy()
        for x, y, dx, dy, radius, color in blobs:
            center = (int((x + dx * index) % width), int((y + dy * index) % height))
            cv2.circle(frame, center, radius, color, thickness=-1)
        yield frame
        index += 1
