"""Fresh or nothing: the planner gets the newest costmap only while younger than ``max_age``,
with a real embedded server answering real frames; stale when the server is slow, stopped, or
the camera froze."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from client import SegmentationClient, SegmentationStream
from client.camera import Camera, CameraMount
from client.costmap import CostmapSpec, GroundProjector
from client.freshness import FreshMap
from client.navigation import DrivingPolicy
from client.stream import LatestFrameSource
from client.synthetic import synthetic_frames

SIZE = (96, 128)


def projector_for(client: SegmentationClient) -> GroundProjector:
    camera = Camera.from_fov(90.0, SIZE, CameraMount(height_m=0.3, pitch_deg=15.0))
    policy = DrivingPolicy.from_metadata(client.metadata(), traversable=["background"])
    return GroundProjector(camera, policy, CostmapSpec(0.1, ahead_m=4.0, side_m=2.0))


def feed(stream, projector: GroundProjector, maps: FreshMap, results: list) -> None:
    """The stream → FreshMap wiring a vehicle runs: maps for answered frames, failures noted."""
    for result in stream:
        results.append(result)
        if result.ok:
            segmentation = result.segmentation
            maps.update(
                projector.project(
                    segmentation.class_map, segmentation.confidence, stamp=result.captured_at
                )
            )
        else:
            maps.note_failure(result.error)


def test_a_live_stream_keeps_the_map_fresh_and_a_slow_server_makes_it_stale(target):
    with SegmentationClient(target, timeout=10) as client:
        projector = projector_for(client)
        fresh, strict = FreshMap(max_age=5.0), FreshMap(max_age=0.001)  # 1 ms: any server is slow
        results = []
        with LatestFrameSource(synthetic_frames(6, size=SIZE), latest_only=False) as source:
            for result in SegmentationStream(client, source, confidence=True):
                results.append(result)
                assert result.ok, result.error
                costmap = projector.project(
                    result.segmentation.class_map,
                    result.segmentation.confidence,
                    stamp=result.captured_at,
                )
                fresh.update(costmap)
                strict.update(costmap)
                state = fresh.get()
                assert state.fresh and state.map is costmap  # the newest, under its own stamp
                assert state.age >= result.age  # at least capture → answer old
    assert fresh.updates == 6 and fresh.get().map.stamp == results[-1].captured_at
    state = strict.get()
    assert state.map is None and strict.latest() is None
    assert "old (max_age 0.00 s)" in state.reason and state.age > 0.001


def test_a_stopped_server_makes_the_map_stale(start_server):
    server = start_server()
    maps, results, stopped_at = FreshMap(max_age=0.5), [], None
    with SegmentationClient(f"127.0.0.1:{server.port}", timeout=0.3, connect_timeout=0.3) as client:
        projector = projector_for(client)
        with LatestFrameSource(synthetic_frames(None, size=SIZE), fps=20) as source:
            deadline = time.monotonic() + 60
            # A few maps, then the server stops; the stream goes on (its frames fail).
            for result in SegmentationStream(client, source, confidence=True):
                feed([result], projector, maps, results)
                if stopped_at is None and maps.updates >= 3:
                    assert maps.get().fresh
                    server.stop(grace=0.1)
                    stopped_at = time.monotonic()
                if stopped_at is not None and time.monotonic() - stopped_at > 1.0:
                    break
                assert time.monotonic() < deadline, "the stream did not go on"
    state = maps.get()
    assert not state.fresh and state.age > 0.5
    assert "the last frame failed" in state.reason, state.reason
    assert maps.failures >= 1 and not results[-1].ok


def test_a_frozen_camera_makes_the_map_stale(target):
    """A camera that stops delivering (driver hang, cable): no error anywhere, only silence."""
    unfrozen = threading.Event()

    def camera():
        yield from synthetic_frames(3, size=SIZE)
        unfrozen.wait(30)  # frozen: no frame, no error

    maps, results = FreshMap(max_age=0.3), []
    with SegmentationClient(target, timeout=10) as client:
        projector = projector_for(client)
        with LatestFrameSource(camera(), latest_only=False) as source:
            stream = SegmentationStream(client, source, confidence=True, source_timeout=30)
            worker = threading.Thread(target=feed, args=(stream, projector, maps, results))
            worker.start()
            try:
                deadline = time.monotonic() + 60
                while maps.updates < 3:
                    assert time.monotonic() < deadline, "no maps came"
                    time.sleep(0.02)
                assert maps.get().fresh
                time.sleep(0.4)
                state = maps.get()
                assert not state.fresh and 0.3 < state.age < 5
                assert state.reason.startswith("the newest map is") and "failed" not in state.reason
            finally:
                unfrozen.set()
                worker.join(timeout=30)
    assert len(results) == 3 and all(r.ok for r in results)


def test_an_overtaken_map_does_not_replace_a_newer_one():
    now = [10.0]
    maps = FreshMap(max_age=1.0, clock=lambda: now[0])
    newer, older = _Map(9.8), _Map(9.5)
    maps.update(newer)
    maps.update(older)  # an answer that arrived late
    assert maps.latest() is newer and maps.updates == 1
    now[0] = 10.81
    assert maps.get().reason == "the newest map is 1.01 s old (max_age 1.00 s)"


class _Map:
    def __init__(self, stamp: float):
        self.stamp = stamp


@pytest.mark.parametrize("max_age", [0, -1.0, float("nan")])
def test_max_age_must_be_positive(max_age):
    with pytest.raises(ValueError, match=f"max_age={max_age}"):
        FreshMap(max_age=max_age)


def test_stamps_are_the_frames_capture_times(target):
    with SegmentationClient(target, timeout=10) as client:
        projector = projector_for(client)
        with LatestFrameSource(synthetic_frames(2, size=SIZE), latest_only=False) as source:
            results = list(itertools.islice(SegmentationStream(client, source), 2))
    costmaps = [projector.project(r.segmentation.class_map, stamp=r.captured_at) for r in results]
    assert [c.stamp for c in costmaps] == [r.captured_at for r in results]
    assert costmaps[0].stamp < costmaps[1].stamp < time.monotonic()
    assert np.isin(costmaps[0].data, (-1, 0, 99, 100)).all()
