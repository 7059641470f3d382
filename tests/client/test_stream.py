"""Streaming against a real embedded server: video files, latest-frame-wins, server restarts."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from client import (
    LatestFrameSource,
    SegmentationClient,
    SegmentationStream,
    SourceError,
    open_source,
)
from client.synthetic import synthetic_frames
from tests.helpers import free_port


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """A 24-frame MJPEG .avi written with cv2.VideoWriter, and its frames as read back."""
    path = tmp_path_factory.mktemp("video") / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (160, 120))
    assert writer.isOpened()
    for frame in synthetic_frames(24, size=(120, 160), seed=1):
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == 24
    return path, frames


def test_every_frame_of_a_video_file_in_order(target, video_file):
    path, frames = video_file
    seen = []
    with SegmentationClient(target) as client, open_source(str(path), latest_only=False) as video:
        stream = SegmentationStream(client, video, max_in_flight=2, on_result=seen.append)
        results = list(stream)
        reference = client.segment(frames[5])
    assert [r.index for r in results] == list(range(24)) and seen == results
    assert all(r.ok and r.segmentation.class_map.shape == (120, 160) for r in results)
    np.testing.assert_array_equal(results[5].frame, frames[5])
    np.testing.assert_array_equal(results[5].segmentation.class_map, reference.class_map)
    assert stream.stats.frames == 24 and stream.stats.ok == 24 and stream.stats.dropped == 0
    assert all(r.completed_at >= r.captured_at and r.capture_wait >= 0 for r in results)


def test_latest_frame_wins_when_the_camera_is_faster_than_the_server(target):
    # 200 frames at 400 fps (0.5 s) against a server that needs tens of ms per frame: without
    # dropping, the last frame would wait for every earlier one.
    camera = LatestFrameSource(synthetic_frames(200, size=(120, 160)), fps=400)
    with SegmentationClient(target) as client, camera:
        results = list(SegmentationStream(client, camera, max_in_flight=1))
    indexes = [r.index for r in results]
    assert indexes == sorted(set(indexes)) and indexes[-1] == 199  # in order; the end is seen
    assert camera.captured == 200
    assert camera.dropped > 0 and len(results) + camera.dropped == 200
    # A frame waits at most for the request ahead of it, then for its own: its age is bounded
    # by two calls (plus scheduling), however many frames the camera gave meanwhile. Without
    # dropping, the last frame would have waited for all ~200 before it.
    slowest_call = max(r.segmentation.timings.total for r in results)
    ages = [round(r.age, 3) for r in results]
    assert max(ages) < 2 * slowest_call + 0.25, ages


def test_every_frame_mode_holds_the_reader_back():
    source = LatestFrameSource(synthetic_frames(50, size=(8, 8)), latest_only=False)
    with source:
        indexes = []
        while (frame := source.read(timeout=5)) is not None:
            indexes.append(frame.index)
            time.sleep(0.001)
    assert indexes == list(range(50)) and source.dropped == 0


def test_stream_survives_a_server_restart(start_server, frame_size=(96, 128)):
    port = free_port()
    first = start_server(port=port)
    restarted_at = []  # how many results had come out when the new server was listening
    results = []

    def on_result(result):
        results.append(result)
        if len(results) == 5:
            threading.Thread(target=restart, daemon=True).start()

    def restart():
        first.stop(grace=0.2)
        time.sleep(1.0)
        start_server(port=port)
        restarted_at.append(len(results))

    camera = LatestFrameSource(synthetic_frames(None, size=frame_size), fps=20)
    deadline = time.monotonic() + 60
    with SegmentationClient(f"127.0.0.1:{port}", timeout=0.3) as client, camera:
        stream = SegmentationStream(client, camera, max_in_flight=2, on_result=on_result)
        for _ in stream:
            after = results[restarted_at[0] :] if restarted_at else []
            if sum(r.ok for r in after) >= 5 or time.monotonic() > deadline:
                break
    assert restarted_at, "the server was not restarted"
    before, after = results[5 : restarted_at[0]], results[restarted_at[0] :]
    failed = [r for r in results if not r.ok]
    assert failed and not any(r.ok for r in before[2:]), "frames sent while it was down fail"
    errors = {type(r.error).__name__ for r in failed}
    assert errors == {"ServerUnavailable"}, {str(r.error) for r in failed}
    assert stream.stats.failed == len(failed) and stream.stats.ok == len(results) - len(failed)
    recovered = [r for r in after if r.ok]
    assert len(recovered) >= 5, "the stream must reconnect once the server is back"
    assert all(r.segmentation.class_map.shape == frame_size for r in recovered)


def test_leaving_the_stream_early_cancels_frames_in_flight(target):
    camera = LatestFrameSource(synthetic_frames(None, size=(96, 128)), fps=100)
    with SegmentationClient(target, workers=4) as client, camera:
        stream = SegmentationStream(client, camera, max_in_flight=4)
        iterator = iter(stream)
        next(iterator)
        iterator.close()  # what a `break` does to the generator
        started = time.monotonic()
    # Cancelled frames are never sent: closing the client returns within about one call.
    assert time.monotonic() - started < 5
    assert not camera._thread.is_alive()


def test_max_in_flight_is_bounded_by_the_clients_workers(target):
    with (
        SegmentationClient(target, workers=2) as client,
        pytest.raises(ValueError, match=r"between 1 and the client's workers \(2\)"),
    ):
        SegmentationStream(client, LatestFrameSource(iter(())), max_in_flight=3)


def test_the_stream_ends_when_the_source_ends(target):
    with SegmentationClient(target) as client:
        empty = LatestFrameSource(iter(()))
        assert list(SegmentationStream(client, empty)) == []
        short = LatestFrameSource(synthetic_frames(3, size=(16, 16)), latest_only=False)
        assert SegmentationStream(client, short).run().frames == 3


def test_source_errors_are_named():
    with pytest.raises(SourceError, match=r"no-such-file\.mp4"):
        open_source("no-such-file.mp4")

    def broken():
        yield np.zeros((4, 4, 3), np.uint8)
        raise OSError("camera unplugged")

    source = LatestFrameSource(broken(), latest_only=False)
    assert source.read(timeout=5) is not None
    with pytest.raises(SourceError, match="camera unplugged"):
        source.read(timeout=5)
    unplug = threading.Event()

    def silent():
        unplug.wait(10)
        yield from ()

    with LatestFrameSource(silent()) as camera:
        with pytest.raises(SourceError, match=r"no frame within 0\.2 s"):
            camera.read(timeout=0.2)
        unplug.set()
