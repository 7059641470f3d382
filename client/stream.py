"""Camera frames to class maps, continuously, without the latency ever growing.

A capture thread reads the source and keeps only the newest frame (latest-frame-wins): when the
camera is faster than the server, old frames are dropped and counted instead of queueing up.
The stream keeps up to ``max_in_flight`` requests outstanding and yields results in frame
order, as an iterator or through a callback for the planner:

    with SegmentationClient("server:8500") as client, open_source(0) as camera:
        for result in SegmentationStream(client, camera, max_in_flight=2):
            if result.ok:
                planner.update(result.segmentation.class_map, stamp=result.captured_at)

Frames that fail (server restarting, deadline passed) come out with ``error`` set and are
counted; the stream goes on, and ends when the source ends. Any segmenter with the client's
interface streams the same way (``Segmenter``): the onboard model (``client.onboard``), or
failover between the two (``client.failover``), whose answers the stats count by source.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from client.errors import ClientError
from client.segmentation_client import ColorOrder, Segmentation


class Segmenter(Protocol):
    """What a stream needs of a segmenter: ``SegmentationClient``, ``OnboardSegmenter`` and
    ``FailoverSegmenter`` all have it. ``workers`` bounds the frames in flight."""

    workers: int

    def segment_async(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = ...,
        confidence: bool = ...,
        timeout: float | None = ...,
    ) -> Future[Segmentation]: ...


class SourceError(RuntimeError):
    """A frame source that cannot be opened or stopped delivering frames."""


@dataclass(frozen=True)
class CapturedFrame:
    """A frame as the capture thread got it; ``index`` counts every frame the source gave,
    dropped ones included, so gaps show what was skipped."""

    index: int
    image: np.ndarray
    captured_at: float  # time.monotonic()


class LatestFrameSource:
    """Reads ``frames`` on a thread and hands out the newest one.

    ``latest_only=False`` instead hands out every frame, making the reader wait (for offline
    processing of a file). ``fps`` paces the reading (a file played as a camera would).
    ``on_close`` runs on the capture thread when reading ends (it releases the device).
    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        frames: Iterable[np.ndarray],
        *,
        latest_only: bool = True,
        fps: float | None = None,
        name: str = "frames",
        on_close: Callable[[], None] | None = None,
    ):
        self.name = name
        self.latest_only = latest_only
        self.fps = fps
        self.captured = 0
        self.dropped = 0
        self._frames = frames
        self._on_close = on_close
        self._slot: CapturedFrame | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._capture, name=f"capture-{name}", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        started = time.monotonic()
        try:
            for index, image in enumerate(self._frames):
                if self._stop.is_set():
                    break
                if self.fps:
                    delay = started + index / self.fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                frame = CapturedFrame(index, image, time.monotonic())
                with self._changed:
                    if not self.latest_only:
                        self._changed.wait_for(lambda: self._slot is None or self._stop.is_set())
                    if self._stop.is_set():
                        break
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self.captured += 1
                    self._changed.notify_all()
        except BaseException as error:  # handed to the reader, which raises it
            self._error = error
        finally:
            # The device is released here, by the thread that reads it: OpenCV captures must
            # not be released while a read is in progress on another thread.
            if self._on_close is not None:
                self._on_close()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def read(self, timeout: float | None = None) -> CapturedFrame | None:
        """The newest frame not yet read; None when the source has ended. Raises SourceError
        when no frame comes within ``timeout`` seconds or the source failed."""
        with self._changed:
            if self._stop.is_set():
                return None
            if not self._changed.wait_for(lambda: self._slot is not None or self._ended, timeout):
                raise SourceError(f"{self.name}: no frame within {timeout:g} s")
            frame, self._slot = self._slot, None
            self._changed.notify_all()
        if frame is None and self._error is not None:
            raise SourceError(f"{self.name}: reading failed: {self._error}") from self._error
        return frame

    def close(self, timeout: float = 5.0) -> None:
        """Stops reading; the capture thread releases the device once its current read ends
        (a camera or network stream that hangs is left to its own read timeout)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=timeout)

    def __enter__(self) -> LatestFrameSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _read_capture(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, image = capture.read()
        if not ok:
            return
        yield image


def open_capture(source: int | str) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` for a device index ("0" too), a file, an RTSP/HTTP URL, or a
    GStreamer pipeline (a string with ``!``); raises SourceError naming what failed."""
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, str) and "!" in source:
        capture = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    else:
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        raise SourceError(
            f"OpenCV could not open video source {source!r} (a camera index, a video file, an "
            "rtsp:// or http:// URL, or a GStreamer pipeline)"
        )
    return capture


def open_source(
    source: int | str | Iterable[np.ndarray],
    *,
    latest_only: bool = True,
    fps: float | None = None,
) -> LatestFrameSource:
    """A LatestFrameSource over a camera, file, URL, pipeline (see ``open_capture``) or any
    iterable of BGR frames. ``fps`` paces reading; cameras pace themselves, so leave it None."""
    if isinstance(source, int | str):
        capture = open_capture(source)
        return LatestFrameSource(
            _read_capture(capture),
            latest_only=latest_only,
            fps=fps,
            name=str(source),
            on_close=capture.release,
        )
    return LatestFrameSource(source, latest_only=latest_only, fps=fps)


@dataclass(frozen=True)
class StreamResult:
    """One frame's outcome. ``age`` is end-to-end latency: capture to class map in hand."""

    index: int
    frame: np.ndarray
    captured_at: float
    capture_wait: float  # seconds the stream waited for this frame from the source
    completed_at: float
    segmentation: Segmentation | None
    error: ClientError | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def age(self) -> float:
        return self.completed_at - self.captured_at

    @property
    def source(self) -> str | None:
        """Who answered (``"remote"`` or ``"onboard"``); None for a failed frame."""
        return None if self.segmentation is None else self.segmentation.source


@dataclass
class StreamStats:
    """Frames so far: answered (``ok``, of which ``remote`` and ``onboard``), failed, and
    dropped by latest-frame-wins."""

    frames: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    remote: int = 0
    onboard: int = 0


class SegmentationStream:
    """Frames from ``source`` through ``client`` (any ``Segmenter``), up to ``max_in_flight``
    at once, results in frame order. Iterate it, or call ``run(on_result)``; ``stats`` counts
    as it goes.

    ``frame_timeout`` is each frame's deadline (the client's ``timeout`` by default): a frame
    older than a second or two is of no use to a planner, and while a server is down each
    frame fails after at most this long. Leaving the loop early cancels the frames in flight.
    """

    def __init__(
        self,
        client: Segmenter,
        source: LatestFrameSource,
        *,
        max_in_flight: int = 1,
        confidence: bool = False,
        color: ColorOrder = "bgr",
        frame_timeout: float | None = None,
        source_timeout: float = 10.0,
        on_result: Callable[[StreamResult], None] | None = None,
    ):
        if not 1 <= max_in_flight <= client.workers:
            raise ValueError(
                f"max_in_flight must be between 1 and the client's workers ({client.workers}), "
                f"got {max_in_flight}"
            )
        self.client = client
        self.source = source
        self.max_in_flight = max_in_flight
        self.confidence = confidence
        self.color = color
        self.frame_timeout = frame_timeout
        self.source_timeout = source_timeout
        self.on_result = on_result
        self.stats = StreamStats()

    def __iter__(self) -> Iterator[StreamResult]:
        pending: deque[tuple[CapturedFrame, float, Future[Segmentation]]] = deque()
        source_ended = False
        try:
            while True:
                while not source_ended and len(pending) < self.max_in_flight:
                    asked = time.monotonic()
                    frame = self.source.read(timeout=self.source_timeout)
                    if frame is None:
                        source_ended = True
                        break
                    wait = time.monotonic() - asked
                    future = self.client.segment_async(
                        frame.image,
                        color=self.color,
                        confidence=self.confidence,
                        timeout=self.frame_timeout,
                    )
                    pending.append((frame, wait, future))
                if not pending:
                    return
                frame, wait, future = pending.popleft()
                result = self._result(frame, wait, future)
                if self.on_result is not None:
                    self.on_result(result)
                yield result
        finally:  # a break, an exception or Ctrl-C: frames still queued are not sent
            for *_, future in pending:
                future.cancel()

    def _result(
        self, frame: CapturedFrame, wait: float, future: Future[Segmentation]
    ) -> StreamResult:
        segmentation, error = None, None
        try:
            segmentation = future.result()
        except ClientError as failure:
            error = failure
        self.stats.frames += 1
        self.stats.ok += error is None
        self.stats.failed += error is not None
        self.stats.remote += segmentation is not None and segmentation.source == "remote"
        self.stats.onboard += segmentation is not None and segmentation.source == "onboard"
        self.stats.dropped = self.source.dropped
        return StreamResult(
            index=frame.index,
            frame=frame.image,
            captured_at=frame.captured_at,
            capture_wait=wait,
            completed_at=time.monotonic(),
            segmentation=segmentation,
            error=error,
        )

    def run(self, on_result: Callable[[StreamResult], None] | None = None) -> StreamStats:
        """Runs to the end of the source, calling ``on_result`` per frame (after the
        constructor's callback, if any); returns the counts."""
        for result in self:
            if on_result is not None:
                on_result(result)
        return self.stats
