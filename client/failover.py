"""Failover: the model server first, the onboard model when the server does not answer in time.

A vehicle that loses its link (Wi-Fi gone, server restarting) must not drive blind. While an
onboard model is loaded, every frame gets an answer: from the server when it answers within
the per-frame ``budget``, else from the model on the vehicle, and every answer says which
(``Segmentation.source``):

    remote = SegmentationClient("server:8500")
    onboard = OnboardSegmenter("deeplabv3.tflite", threads=2)
    with FailoverSegmenter(remote, onboard, budget=0.25) as segmenter:  # closes both
        for result in SegmentationStream(segmenter, camera):
            result.segmentation.source  # "remote" or "onboard"; result.ok is always True
        segmenter.stats  # remote and onboard answers, failovers, recoveries

The switch costs no frame: gRPC's own health-checked channel says when the server is gone
(TRANSIENT_FAILURE, ``SegmentationClient.watch_connectivity``), and a frame waiting for the
server then goes onboard at once instead of waiting out its budget; a server that answers
with an error or not within the budget sends that frame onboard too. From then on frames go
straight onboard while a background thread asks the server (GetModelStatus, waiting for the
channel to be ready) every ``probe_interval``, and at once when the channel is READY again;
the first answer that a version is AVAILABLE sends the next frame back to the server. No probe
runs on a frame's path.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np

from client.errors import ClientClosed, ClientError, InvalidFrame
from client.onboard import OnboardSegmenter
from client.palette import ColorOrder
from client.results import ModelMetadata, Segmentation
from client.segmentation_client import SegmentationClient, check_frame

DEFAULT_BUDGET = 0.25
"""Seconds a frame waits for the server before the onboard model answers it."""
DEFAULT_PROBE_INTERVAL = 0.5
"""Seconds between the background questions to a server that is down."""


@dataclass
class FailoverStats:
    """Answers by source, switches each way, and why the server last lost a frame."""

    remote: int = 0
    onboard: int = 0
    failovers: int = 0
    recoveries: int = 0
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, segmentation: Segmentation) -> None:
        with self._lock:
            if segmentation.source == "remote":
                self.remote += 1
            else:
                self.onboard += 1


class FailoverSegmenter:
    """``remote`` while it answers within ``budget`` seconds, ``onboard`` otherwise; back to
    ``remote`` once the background probe finds it serving. Has the clients' interface
    (``segment``, ``segment_async``, ``metadata``, ``workers``, ``close``) so streams and the
    bench take it as they take a client. Owns both: ``close`` closes them.

    ``segment`` never raises for a lost server; it raises InvalidFrame for a bad frame (as
    both would) and the onboard model's own errors.
    """

    def __init__(
        self,
        remote: SegmentationClient,
        onboard: OnboardSegmenter,
        *,
        budget: float = DEFAULT_BUDGET,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
    ):
        if budget <= 0 or probe_interval <= 0:
            raise ValueError(f"budget ({budget}) and probe_interval ({probe_interval}) must be > 0")
        if remote.output_size != onboard.output_size:  # a planner gets one size of map
            raise ValueError(
                f"the remote client's output_size {remote.output_size} and the onboard model's "
                f"{onboard.output_size} differ: give both the planner's size"
            )
        self.remote = remote
        self.onboard = onboard
        self.budget = budget
        self.probe_interval = probe_interval
        self.workers = remote.workers
        self.stats = FailoverStats()
        self._state = threading.Condition()
        self._remote_up = True  # until a frame or the channel says otherwise
        self._down_since = 0  # bumped at each failover: wakes the frames waiting on the server
        self._ready = threading.Event()  # the channel is READY: probe now
        self._closed = threading.Event()
        self._probe: threading.Thread | None = None
        self._warmed: set[tuple[int, ...]] = set()  # frame sizes the onboard model has run
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="failover")
        self._unwatch = remote.watch_connectivity(self._on_connectivity)

    # -- state ------------------------------------------------------------------------------

    @property
    def remote_up(self) -> bool:
        """Whether the next frame goes to the server."""
        return self._remote_up

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        # gRPC's thread: flags only.
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            self._went_down(f"{self.remote.target}: no server ready (TRANSIENT_FAILURE)")
        elif state == grpc.ChannelConnectivity.READY:
            self._ready.set()

    def _went_down(self, reason: str) -> None:
        with self._state:
            self.stats.last_error = reason
            if not self._remote_up or self._closed.is_set():
                return
            self._remote_up = False
            self._down_since += 1
            self.stats.failovers += 1
            self._ready.clear()
            self._state.notify_all()
            if self._probe is None or not self._probe.is_alive():
                self._probe = threading.Thread(
                    target=self._probe_until_up, name="failover-probe", daemon=True
                )
                self._probe.start()

    def _probe_until_up(self) -> None:
        """Asks the server every ``probe_interval`` (at once when the channel turns READY)
        until a version is AVAILABLE; the frames meanwhile go onboard."""
        while not self._closed.is_set():
            self._ready.wait(self.probe_interval)
            self._ready.clear()
            if self._closed.is_set():
                return
            try:
                statuses = self.remote.model_status(timeout=self.probe_interval)
            except ClientError as error:
                self.stats.last_error = str(error)
                continue
            if any(s.state == "AVAILABLE" for versions in statuses.values() for s in versions):
                with self._state:
                    self._remote_up = True
                    self.stats.recoveries += 1
                return

    # -- frames -----------------------------------------------------------------------------

    def segment(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Segmentation:
        """One frame's class map from whoever answers in time. ``timeout`` overrides the
        budget for this frame."""
        if self._closed.is_set():
            raise ClientClosed("the failover segmenter is closed")
        check_frame(frame, color)
        segmentation = None
        if frame.shape not in self._warmed:
            # A runtime re-allocates at each new frame size (LiteRT: tens of ms): done now, on
            # the onboard model's thread, the first fallback answer does not pay for it.
            self._warmed.add(frame.shape)
            self.onboard.segment_async(frame, color=color)
        if self._remote_up:
            segmentation = self._ask_remote(frame, color, confidence, timeout or self.budget)
        if segmentation is None:
            segmentation = self.onboard.segment(frame, color=color, confidence=confidence)
        self.stats.count(segmentation)
        return segmentation

    def _ask_remote(
        self, frame: np.ndarray, color: ColorOrder, confidence: bool, budget: float
    ) -> Segmentation | None:
        """The server's answer, or None when it failed, took longer than ``budget``, or the
        server was found gone meanwhile (then the call is left to end by its deadline)."""
        with self._state:
            failovers = self._down_since
        call: Future[Segmentation] = self.remote.segment_async(
            frame, color=color, confidence=confidence, timeout=budget
        )
        call.add_done_callback(lambda _: self._wake())
        deadline = time.monotonic() + budget
        with self._state:
            answered = self._state.wait_for(
                lambda: call.done() or self._down_since != failovers,
                timeout=max(deadline - time.monotonic(), 0),
            )
        if not answered:
            self._went_down(f"{self.remote.target}: no answer within {budget:g} s")
            return None
        if not call.done():  # the server went away while this frame waited
            return None
        try:
            return call.result()
        except InvalidFrame:
            raise
        except ClientError as error:
            self._went_down(str(error))
            return None

    def _wake(self) -> None:
        with self._state:
            self._state.notify_all()

    def segment_async(
        self,
        frame: np.ndarray,
        *,
        color: ColorOrder = "bgr",
        confidence: bool = False,
        timeout: float | None = None,
    ) -> Future[Segmentation]:
        """``segment`` on the segmenter's threads (``workers``, as many as the remote's)."""
        if self._closed.is_set():
            raise ClientClosed("the failover segmenter is closed")
        return self._executor.submit(
            self.segment, frame, color=color, confidence=confidence, timeout=timeout
        )

    def metadata(self) -> ModelMetadata:
        """The onboard model's metadata (its sidecar): known without the server. The server's
        model is meant to be the same export; its ``metadata()`` is ``remote.metadata()``."""
        return self.onboard.metadata()

    def close(self) -> None:
        """Stops the probe and the watch, then closes the remote client and the onboard model."""
        self._closed.set()
        self._ready.set()
        self._unwatch()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.remote.close()
        self.onboard.close()
        if self._probe is not None:
            self._probe.join(timeout=self.probe_interval + 1)

    def __enter__(self) -> FailoverSegmenter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
