"""Milliseconds per frame to turn a class map (and confidence) into a ground costmap.

One ``GroundProjector`` per camera setup (homography, cells behind the camera, cost table and
inflation kernel made once), then ``project`` per frame: ``cv2.warpPerspective`` of the class
map and the confidence, the cost table, the unknown cells, the inflation. Also the same with a
lens distortion model (one ``cv2.remap`` per map instead of the warp). Frames are synthetic
class maps of the size given, with a few obstacle blobs; each run projects ``--frames``
frames and the script prints the median and min–max over ``--runs`` runs.

    python benchmarks/costmap_projection.py                       # 480x640 → 10 m × 8 m at 5 cm
    python benchmarks/costmap_projection.py --size 720x1280 --resolution 0.02
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from client.camera import Camera, CameraMount
from client.costmap import CostmapSpec, GroundProjector
from client.navigation import DrivingPolicy


def class_maps(count: int, size: tuple[int, int], seed: int = 0):
    """(class map, confidence) pairs: background with a few obstacle blobs (VOC ids)."""
    rng = np.random.default_rng(seed)
    height, width = size
    for _ in range(count):
        class_map = np.zeros(size, np.uint8)
        for _ in range(4):
            centre = (int(rng.integers(width)), int(rng.integers(height // 3, height)))
            cv2.circle(
                class_map, centre, int(rng.integers(10, height // 6)), int(rng.integers(1, 21)), -1
            )
        confidence = rng.integers(90, 256, size, dtype=np.uint8)
        yield class_map, confidence


def per_frame_ms(projector: GroundProjector, frames: list, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        for stamp, (class_map, confidence) in enumerate(frames):
            projector.project(class_map, confidence, stamp=float(stamp))
        times.append((time.perf_counter() - started) * 1000 / len(frames))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="480x640", help="class map HxW")
    parser.add_argument("--resolution", type=float, default=0.05, help="metres per cell")
    parser.add_argument("--ahead", type=float, default=10.0)
    parser.add_argument("--side", type=float, default=4.0, help="each side: 8 m across")
    parser.add_argument("--frames", type=int, default=200, help="frames per run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    mount = CameraMount(height_m=0.3, pitch_deg=10.0)
    policy = DrivingPolicy.voc()
    spec = CostmapSpec(args.resolution, ahead_m=args.ahead, side_m=args.side)
    frames = list(class_maps(args.frames, size))
    cases = {
        "pinhole (warpPerspective)": Camera.from_fov(90.0, size, mount),
        "distorted lens (remap)": Camera.from_fov(
            90.0, size, mount, distortion=(-0.25, 0.06, 0.0, 0.0)
        ),
    }
    rows, columns = spec.shape
    print(
        f"{size[0]}x{size[1]} class map + confidence → {args.ahead:g} m × {2 * args.side:g} m at "
        f"{args.resolution * 100:g} cm ({columns}×{rows} cells), inflation {spec.inflation_m} m; "
        f"{args.frames} frames per run, {args.runs} runs; OpenCV {cv2.__version__}, "
        f"{cv2.getNumThreads()} threads"
    )
    print("| projection | ms per frame, median | min–max |")
    print("| --- | --- | --- |")
    for name, camera in cases.items():
        started = time.perf_counter()
        projector = GroundProjector(camera, policy, spec)
        setup_ms = (time.perf_counter() - started) * 1000
        times = per_frame_ms(projector, frames, args.runs)
        print(
            f"| {name} (set-up once: {setup_ms:.1f} ms) | {statistics.median(times):.3f} | "
            f"{min(times):.3f}–{max(times):.3f} |"
        )


if __name__ == "__main__":
    main()
