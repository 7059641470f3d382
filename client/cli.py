"""``python -m client``: per-frame latency benchmark, overlay viewer and drive recorder
against a model server.

    python -m client bench --target localhost:8500 --source synthetic --frames 300 \\
        --transport raw --in-flight 1 --out results.json --plot latency.png
    python -m client view --target localhost:8500 --source drive.mp4 --out overlay.mp4
    python -m client record --target localhost:8500 --source 0 --out drive.mcap --frames 600 \\
        --camera-height 0.25 --camera-pitch 15 --traversable floor --picture costmaps.png

``record`` (and ``view --record``) writes the drive as MCAP for Foxglove: frames, class maps,
confidence, ground costmaps and per-frame latency (``client.recording``).

``--source`` is a camera index (``0``), a video file, an rtsp:// or http:// URL, a GStreamer
pipeline, or ``synthetic`` (moving shapes, no camera needed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import grpc
import numpy as np

from client import contract
from client.bench_report import (
    RESULT_SUFFIXES,
    FrameTiming,
    ProgressLine,
    format_table,
    require_plotting,
    summarize,
    write_plot,
    write_results,
)
from client.camera import DEFAULT_HFOV_DEG, Camera, CameraMount
from client.costmap import CostmapSpec, GroundProjector
from client.costmap_picture import costmap_sheet
from client.errors import ClientError
from client.failover import DEFAULT_BUDGET, FailoverSegmenter
from client.navigation import DrivingPolicy
from client.onboard import OnboardSegmenter
from client.overlay import draw_legend, overlay, present_classes
from client.segmentation_client import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    SegmentationClient,
)
from client.stream import LatestFrameSource, SegmentationStream, SourceError, StreamResult
from client.stream import open_source as open_frame_source
from client.synthetic import synthetic_frames


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH like 480x640, got {text!r}")
    return height, width


def _number(kind: type, minimum: float, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, 1, "a whole number ≥ 1")
_count = _number(int, 0, "a whole number ≥ 0")
_seconds = _number(float, 0.001, "seconds > 0")
_rate = _number(float, 0, "frames per second ≥ 0")


def _target(text: str) -> str:
    """HOST:PORT (or a gRPC URI such as unix:/path): gRPC would read a bare host as port 443."""
    host, _, port = text.rpartition(":")
    if "://" in text or text.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return text
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT like localhost:{contract.GRPC_PORT}, got {text!r}"
        )
    return text


def _add_connection(parser: argparse.ArgumentParser, *, target_required: bool = True) -> None:
    parser.add_argument(
        "--target",
        action="append",
        required=target_required,
        type=_target,
        help=f"model server HOST:PORT (TF Serving's gRPC port is {contract.GRPC_PORT}), or a "
        "gRPC target such as dns:///NAME:PORT; repeat for load balancing over several",
    )
    # Defaults come from the contract and SegmentationClient, where they are written once.
    parser.add_argument(
        "--model", default=contract.DEFAULT_MODEL_NAME, help="model name (default: %(default)s)"
    )
    parser.add_argument("--version", help="model version number or label (default: latest)")
    parser.add_argument(
        "--transport",
        choices=tuple(TRANSPORTS),
        default=DEFAULT_TRANSPORT,
        help="raw pixels or a JPEG (default: %(default)s)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=DEFAULT_JPEG_QUALITY,
        help="0..100, for --transport jpeg (default: %(default)s)",
    )
    parser.add_argument(
        "--ca-cert", type=Path, help="PEM root certificate: connect over TLS (server --ssl-cert)"
    )
    parser.add_argument("--timeout", type=_seconds, default=5.0, help="deadline per frame (s)")
    parser.add_argument(
        "--ready-timeout", type=_seconds, default=60.0, help="wait for the model (s)"
    )
    parser.add_argument(
        "--source", default="synthetic", help="camera index, file, URL, pipeline or 'synthetic'"
    )
    parser.add_argument("--size", type=_size, default=(480, 640), help="synthetic frame size HxW")
    parser.add_argument(
        "--fps",
        type=_rate,
        help="read the source at this rate (default: synthetic 30, a file its own rate, a "
        "camera its own; 0: as fast as it reads)",
    )
    parser.add_argument(
        "--in-flight", type=_positive_int, default=1, help="requests outstanding at once"
    )


def _floats(count: str):
    """Comma-separated numbers: ``count`` is "4" or "4+" (at least four)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        wanted = int(count.rstrip("+"))
        if len(values) < wanted or (not count.endswith("+") and len(values) != wanted):
            raise argparse.ArgumentTypeError(
                f"expected {count.replace('+', ' or more')} comma-separated numbers, got {text!r}"
            )
        return values

    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


# Defaults of the ground costmap are the dataclasses' own, written once there.
_MOUNT, _SPEC = CameraMount(), CostmapSpec()
DEFAULT_TRAVERSABLE = ("background",)  # VOC and the synthetic scenes: every object blocks
PICTURE_ROWS = 4  # frames beside their costmaps in --picture


def _add_costmap(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "ground costmap (client.camera, client.costmap; angles in degrees, lengths in metres)"
    )
    group.add_argument(
        "--camera-height",
        type=float,
        default=_MOUNT.height_m,
        metavar="M",
        help="above ground (%(default)s)",
    )
    group.add_argument(
        "--camera-pitch",
        type=float,
        default=_MOUNT.pitch_deg,
        metavar="DEG",
        help="down from level (%(default)s)",
    )
    group.add_argument(
        "--camera-roll",
        type=float,
        default=_MOUNT.roll_deg,
        metavar="DEG",
        help="right side down (%(default)s)",
    )
    group.add_argument(
        "--camera-hfov",
        type=float,
        default=DEFAULT_HFOV_DEG,
        metavar="DEG",
        help="horizontal field of view (%(default)s)",
    )
    group.add_argument(
        "--camera-k",
        type=_floats("4"),
        metavar="FX,FY,CX,CY",
        help="intrinsics (over --camera-hfov)",
    )
    group.add_argument(
        "--camera-distortion", type=_floats("4+"), metavar="K1,K2,P1,P2[,K3…]",
        help="OpenCV distortion coefficients",
    )  # fmt: skip
    group.add_argument(
        "--resolution",
        type=float,
        default=_SPEC.resolution_m,
        metavar="M",
        help="m per cell (%(default)s)",
    )
    group.add_argument(
        "--ahead", type=float, default=_SPEC.ahead_m, metavar="M", help="grid ahead (%(default)s)"
    )
    group.add_argument(
        "--side",
        type=float,
        default=_SPEC.side_m,
        metavar="M",
        help="grid to each side (%(default)s)",
    )
    group.add_argument(
        "--behind",
        type=float,
        default=_SPEC.behind_m,
        metavar="M",
        help="grid behind (%(default)s)",
    )
    group.add_argument(
        "--inflation",
        type=float,
        default=_SPEC.inflation_m,
        metavar="M",
        help="obstacle inflation radius (%(default)s)",
    )
    classes = group.add_mutually_exclusive_group()
    classes.add_argument(
        "--traversable", type=_names, metavar="NAMES",
        help=f"classes to drive on, by name (default: {','.join(DEFAULT_TRAVERSABLE)}); "
        "every other class is an obstacle",
    )  # fmt: skip
    classes.add_argument("--obstacles", type=_names, metavar="NAMES", help="or the obstacles")
    group.add_argument(
        "--min-confidence",
        type=int,
        help=f"0..255: cells seen less sure are unknown ({DrivingPolicy.min_confidence})",
    )
    group.add_argument("--picture", type=Path, help=f"PNG: {PICTURE_ROWS} frames beside costmaps")


def _add_onboard(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "onboard model (client.onboard, client.failover; the client's `onboard` extra)"
    )
    models = group.add_mutually_exclusive_group()
    models.add_argument(
        "--onboard", type=Path, metavar="M.tflite|M.onnx",
        help="measure this exported model on this machine, alone (no --target)",
    )  # fmt: skip
    models.add_argument(
        "--fallback", type=Path, metavar="M.tflite|M.onnx",
        help="with --target: answer from this model when the server does not (failover)",
    )  # fmt: skip
    group.add_argument(
        "--threads", type=_positive_int, help="onboard runtime threads (default: the runtime's)"
    )
    group.add_argument(
        "--budget", type=_seconds, default=DEFAULT_BUDGET, metavar="S",
        help="with --fallback: seconds a frame waits for the server (%(default)s)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser(
        "bench", help="per-frame latency against a model server, or of the onboard model"
    )
    _add_connection(bench, target_required=False)
    _add_onboard(bench)
    bench.add_argument("--frames", type=_positive_int, default=300, help="frames measured")
    bench.add_argument("--warmup", type=_count, default=5, help="frames sent first, not measured")
    bench.add_argument(
        "--max-failures",
        type=_positive_int,
        default=10,
        help="stop after this many failed frames in a row (the server is gone)",
    )
    bench.add_argument("--confidence", action="store_true", help="also fetch confidence maps")
    bench.add_argument(
        "--output-size",
        type=_size,
        metavar="HxW",
        help="maps at a planner's resolution (e.g. 120x160), not at the frame's size",
    )
    bench.add_argument("--out", type=Path, help="results file: .json or .csv (every frame)")
    bench.add_argument("--plot", type=Path, help="PNG with a latency histogram and timeline")
    bench.add_argument("--quiet", action="store_true", help="no progress line")

    view = commands.add_parser("view", help="write (and show) an overlay video")
    _add_connection(view)
    view.add_argument("--out", type=Path, required=True, help="overlay video (.mp4 or .avi)")
    view.add_argument("--frames", type=_positive_int, help="stop after this many frames")
    view.add_argument("--alpha", type=float, default=0.5, help="class colour opacity")
    view.add_argument(
        "--show", choices=("auto", "yes", "no"), default="auto", help="window (auto: if display)"
    )
    view.add_argument("--record", type=Path, help="also record the drive as MCAP (see record)")
    _add_costmap(view)

    record = commands.add_parser(
        "record", help="record a drive as MCAP for Foxglove: frames, class maps, costmaps"
    )
    _add_connection(record)
    record.add_argument("--out", type=Path, required=True, help="MCAP file (.mcap)")
    record.add_argument("--frames", type=_positive_int, help="stop after this many frames")
    _add_costmap(record)
    return parser


def _version(text: str | None) -> int | str | None:
    return int(text) if text is not None and text.isdigit() else text


def _client(
    args: argparse.Namespace, workers: int, output_size: tuple[int, int] | None = None
) -> SegmentationClient:
    credentials = None
    if args.ca_cert is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=args.ca_cert.read_bytes())
    return SegmentationClient(
        args.target,
        args.model,
        version=_version(args.version),
        transport=args.transport,
        jpeg_quality=args.jpeg_quality,
        timeout=args.timeout,
        credentials=credentials,
        workers=workers,
        output_size=output_size,
    )


def _open_source(args: argparse.Namespace, frames: int | None, every_frame: bool):
    """The frame source and its nominal rate (None: as the source delivers)."""
    if args.source == "synthetic":
        fps = 30.0 if args.fps is None else args.fps
        return (
            LatestFrameSource(
                synthetic_frames(frames, size=args.size),
                latest_only=not every_frame,
                fps=fps or None,
                name="synthetic",
            ),
            fps or None,
        )
    fps = args.fps
    if fps is None and not args.source.isdigit() and Path(args.source).is_file():
        capture = cv2.VideoCapture(args.source)
        fps = capture.get(cv2.CAP_PROP_FPS) or None
        capture.release()
    source = open_frame_source(args.source, latest_only=not every_frame, fps=fps or None)
    return source, fps or None


def _timing(result: StreamResult, started: float) -> FrameTiming:
    segmentation = result.segmentation
    timings = segmentation.timings if segmentation is not None else None
    return FrameTiming(
        index=result.index,
        ok=result.ok,
        latency=result.age,
        capture_wait=result.capture_wait,
        encode=timings.encode if timings else math.nan,
        rpc=timings.rpc if timings else math.nan,
        decode=timings.decode if timings else math.nan,
        request_bytes=segmentation.request_bytes if segmentation else 0,
        response_bytes=segmentation.response_bytes if segmentation else 0,
        completed_at=result.completed_at - started,
        error=str(result.error) if result.error else "",
        source=result.source or "",
    )


def _bench_segmenter(args: argparse.Namespace, stack: contextlib.ExitStack):
    """What ``bench`` measures: the onboard model alone (``--onboard``), the server
    (``--target``), or the server with failover to the onboard model (``--fallback``)."""

    def onboard(path: Path) -> OnboardSegmenter:
        model = OnboardSegmenter(path, threads=args.threads, output_size=args.output_size)
        return stack.enter_context(model)

    if args.onboard is not None:
        if args.target:
            raise ValueError("--onboard measures the model alone: leave out --target")
        return onboard(args.onboard)
    if not args.target:
        raise ValueError("give --target HOST:PORT (a model server) or --onboard M.tflite|M.onnx")
    workers = max(4, args.in_flight)
    client = stack.enter_context(_client(args, workers, output_size=args.output_size))
    print(f"waiting for {args.model} on {', '.join(args.target)} …", file=sys.stderr)
    client.wait_until_ready(args.ready_timeout)
    if args.fallback is None:
        return client
    return stack.enter_context(
        FailoverSegmenter(client, onboard(args.fallback), budget=args.budget)
    )


def bench(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        segmenter = _bench_segmenter(args, stack)
        # Synthetic frames never run out: the benchmark measures --frames answered frames.
        source, fps = _open_source(args, None, every_frame=False)
        with source:
            stream = SegmentationStream(segmenter, source, max_in_flight=args.in_flight)
            timings: list[FrameTiming] = []
            progress = ProgressLine(args.frames, disable=args.quiet, description="bench")
            results = iter(stream)
            dropped_before = 0
            # Warmup frames fill caches and connections on both sides; they are not measured.
            for _ in itertools.islice(results, args.warmup):
                dropped_before = source.dropped
            started = time.monotonic()
            stopped_early = ""
            failures_in_a_row = 0
            try:
                for result in itertools.islice(results, args.frames):
                    timings.append(_timing(result, started))
                    progress.update(timings[-1], dropped=source.dropped - dropped_before)
                    failures_in_a_row = 0 if result.ok else failures_in_a_row + 1
                    if failures_in_a_row >= args.max_failures:
                        stopped_early = f"stopped after {failures_in_a_row} failed frames in a row"
                        break
            except KeyboardInterrupt:
                stopped_early = "interrupted"
            wall = time.monotonic() - started
            progress.close()
            dropped = source.dropped - dropped_before
    settings = {
        "targets": args.target,
        "model": args.model,
        "source": args.source,
        "frame_size": list(args.size) if args.source == "synthetic" else None,
        "output_size": list(args.output_size) if args.output_size else None,
        "source_fps": fps,
        "transport": args.transport,
        "in_flight": args.in_flight,
        "frames": args.frames,
        "warmup": args.warmup,
        "onboard": args.onboard,
        "fallback": args.fallback,
        "threads": args.threads,
        "budget": args.budget if args.fallback else None,
    }
    summary = summarize(timings, dropped=dropped, wall_seconds=wall, settings=settings)
    if isinstance(segmenter, FailoverSegmenter):
        stats = segmenter.stats
        summary["failover"] = {"failovers": stats.failovers, "recoveries": stats.recoveries}
    if stopped_early:
        summary["stopped_early"] = stopped_early
        print(f"{stopped_early}: {len(timings)} of {args.frames} frames measured")
    print(format_table(summary))
    if args.out:
        print(f"results: {write_results(summary, timings, args.out)}")
    if args.plot:
        print(f"plot: {write_plot(timings, args.plot, title=_plot_title(settings))}")
    return 0 if timings and summary["counts"]["ok"] else 1


def _plot_title(settings: dict) -> str:
    return (
        f"{settings['model']} via {settings['transport']}, in flight {settings['in_flight']}, "
        f"source {settings['source']}"
    )


class _Window:
    """cv2.imshow where a display and a GUI build of OpenCV exist; otherwise nothing."""

    def __init__(self, mode: str):
        self.enabled = mode == "yes" or (mode == "auto" and bool(os.environ.get("DISPLAY")))

    def show(self, image: np.ndarray) -> bool:
        """False when the viewer asked to stop (q or Esc)."""
        if not self.enabled:
            return True
        try:
            cv2.imshow("segmentation", image)
            return cv2.waitKey(1) not in (ord("q"), 27)
        except cv2.error:
            print("no window: this OpenCV build has no GUI (headless)", file=sys.stderr)
            self.enabled = False
            return True


def _annotate(result: StreamResult, metadata, alpha: float) -> np.ndarray:
    if result.segmentation is None:
        image = result.frame.copy()
        cv2.putText(image, "no answer", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 255), 2)
        return image
    class_map = result.segmentation.class_map
    image = overlay(result.frame, class_map, alpha=alpha, palette=metadata.palette)
    image = draw_legend(
        image, present_classes(class_map), metadata.class_names, palette=metadata.palette
    )
    label = f"{result.age * 1000:.0f} ms"
    height = image.shape[0]
    scale = max(0.4, height / 1000)
    origin = (10, height - 10)
    cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2)
    return image


def _drive_length(args: argparse.Namespace) -> tuple[bool, int | None]:
    """(live, frames): files and synthetic clips are processed frame by frame; anything else
    (a camera index, a URL, a GStreamer pipeline) is live and goes latest-frame-first."""
    live = args.source != "synthetic" and not Path(args.source).is_file()
    return live, args.frames or (150 if args.source == "synthetic" else None)


class _Recording:
    """Projects each answered frame onto the ground and records the drive as MCAP (``record``
    and ``view --record``); keeps a few frames and costmaps for ``--picture``."""

    def __init__(self, path: Path, args: argparse.Namespace, metadata, frames: int | None):
        from client.recording import DriveRecorder  # mcap only where a drive is recorded

        options = {} if args.min_confidence is None else {"min_confidence": args.min_confidence}
        if args.obstacles:
            self.policy = DrivingPolicy.from_metadata(metadata, obstacles=args.obstacles, **options)
        else:
            traversable = args.traversable or DEFAULT_TRAVERSABLE
            self.policy = DrivingPolicy.from_metadata(metadata, traversable=traversable, **options)
        # Checked before the first frame: a typo should not cost the drive.
        self.mount = CameraMount(args.camera_height, args.camera_pitch, args.camera_roll)
        self.spec = CostmapSpec(args.resolution, args.ahead, args.side, args.behind, args.inflation)
        self.args = args
        self.class_names = metadata.class_names
        self.recorder = DriveRecorder(path, metadata=metadata)
        self.projector: GroundProjector | None = None
        self.every = max(1, (frames or 30 * PICTURE_ROWS) // PICTURE_ROWS)
        self.samples: list = []
        self.frames = self.costmaps = 0

    def _camera(self, size: tuple[int, int]) -> Camera:
        distortion = self.args.camera_distortion
        if self.args.camera_k is None:
            return Camera.from_fov(self.args.camera_hfov, size, self.mount, distortion=distortion)
        fx, fy, cx, cy = self.args.camera_k
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        return Camera(K, size, self.mount, None if distortion is None else np.array(distortion))

    def write(self, result: StreamResult) -> None:
        costmap = None
        segmentation = result.segmentation
        if segmentation is not None:
            if self.projector is None:  # the frame size is known from the first frame on
                camera = self._camera(result.frame.shape[:2])
                self.projector = GroundProjector(camera, self.policy, self.spec)
                self.recorder.write_metadata("costmap", self._description(camera))
            costmap = self.projector.project(
                segmentation.class_map, segmentation.confidence, stamp=result.captured_at
            )
            self.costmaps += 1
            if len(self.samples) < PICTURE_ROWS and self.frames % self.every == self.every // 2:
                self.samples.append((result.frame, costmap))
        self.recorder.write(result, costmap)
        self.frames += 1

    def _description(self, camera: Camera) -> dict:
        obstacles = sorted(self.policy.obstacle_classes)
        return {
            "K": camera.K.tolist(),
            "image_size": list(camera.image_size),
            "distortion": None if camera.distortion is None else camera.distortion.tolist(),
            "mount": vars(self.mount),
            "spec": vars(self.spec),
            "obstacles": [self.class_names[i] for i in obstacles if i < len(self.class_names)],
            "min_confidence": self.policy.min_confidence,
        }

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *exc_info) -> None:
        self.recorder.close()

    def summary(self) -> str:
        lines = [
            f"drive: {self.recorder.path} ({self.frames} frames, {self.costmaps} costmaps; "
            + ", ".join(f"{topic} {count}" for topic, count in sorted(self.recorder.counts.items()))
            + ")"
        ]
        if self.args.picture is not None and self.samples:
            cv2.imwrite(str(self.args.picture), costmap_sheet(self.samples))
            lines.append(f"costmaps: {self.args.picture} ({len(self.samples)} frames)")
        return "\n".join(lines)


def record(args: argparse.Namespace) -> int:
    live, frames = _drive_length(args)
    with _client(args, workers=max(4, args.in_flight)) as client:
        client.wait_until_ready(args.ready_timeout)
        metadata = client.metadata()
        source, _ = _open_source(args, frames, every_frame=not live)
        with source, _Recording(args.out, args, metadata, frames) as recording:
            stream = SegmentationStream(
                client, source, max_in_flight=args.in_flight, confidence=True
            )
            try:
                for result in itertools.islice(stream, frames):
                    recording.write(result)
            except KeyboardInterrupt:  # the usual end of a live drive: the file is finished
                print("stopped", file=sys.stderr)
    print(recording.summary())
    return 0 if recording.costmaps else 1


def view(args: argparse.Namespace) -> int:
    live, frames = _drive_length(args)
    with _client(args, workers=max(4, args.in_flight)) as client:
        client.wait_until_ready(args.ready_timeout)
        metadata = client.metadata()
        source, fps = _open_source(args, frames, every_frame=not live)
        window = _Window(args.show)
        writer = None
        written = failed = 0
        recording = args.record and _Recording(args.record, args, metadata, frames)
        with source, recording or contextlib.nullcontext():
            stream = SegmentationStream(
                client, source, max_in_flight=args.in_flight, confidence=bool(recording)
            )
            for result in itertools.islice(stream, frames):
                if recording:
                    recording.write(result)
                image = _annotate(result, metadata, args.alpha)
                if writer is None:
                    writer = _video_writer(args.out, fps or 15.0, image.shape)
                writer.write(image)
                written += 1
                failed += not result.ok
                if not window.show(image):
                    break
        if writer is not None:
            writer.release()
    print(f"overlay video: {args.out} ({written} frames, {failed} without an answer)")
    if recording:
        print(recording.summary())
    return 0 if written else 1


def _video_writer(path: Path, fps: float, shape: tuple[int, ...]) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write video {path} (use .mp4 or .avi)")
    return writer


def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before the run, so a typo does not cost the measurements."""
    outputs = []
    if args.command == "bench":
        if args.out is not None and args.out.suffix.lower() not in RESULT_SUFFIXES:
            raise ValueError(f"--out {args.out}: use a {' or '.join(RESULT_SUFFIXES)} file")
        if args.plot is not None and args.plot.suffix.lower() != ".png":
            raise ValueError(f"--plot {args.plot}: the plot is a PNG, name it .png")
        if args.plot is not None:
            require_plotting()
        outputs = [args.out, args.plot]
    elif args.command == "view":
        if args.out.suffix.lower() not in (".mp4", ".avi"):
            raise ValueError(f"--out {args.out}: use an .mp4 or .avi file")
        outputs = [args.out, *_check_recording(args.record, args.picture)]
    else:
        outputs = _check_recording(args.out, args.picture)
    for path in outputs:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def _check_recording(drive: Path | None, picture: Path | None) -> list[Path | None]:
    if drive is not None and drive.suffix.lower() != ".mcap":
        raise ValueError(f"--out/--record {drive}: the drive is an MCAP file, name it .mcap")
    if picture is not None and picture.suffix.lower() != ".png":
        raise ValueError(f"--picture {picture}: the picture is a PNG, name it .png")
    if picture is not None and drive is None:
        raise ValueError(f"--picture {picture}: needs --record FILE.mcap (costmaps of a drive)")
    return [drive, picture]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"bench": bench, "view": view, "record": record}
    try:
        _check_outputs(args)
        return commands[args.command](args)
    except (ClientError, SourceError, ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
