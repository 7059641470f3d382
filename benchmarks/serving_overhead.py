"""What the model server adds: the same 480×640 frames in-process through the SavedModel's
signatures and end to end through ``python -m serving`` (gRPC on 127.0.0.1), in one run.

The server runs in a process of its own (no shared GIL with the client) with the same
TensorFlow thread settings as the in-process reference. Both paths are warmed up, then each
round sends every frame through all four paths, interleaved (the in-process/server order
alternates from round to round), so machine drift hits both alike. A request's time covers
what a caller sees: in-process, NumPy in → signature → NumPy out; through the server, building
the PredictRequest → Predict → both outputs decoded back to NumPy.

    python benchmarks/serving_overhead.py --version-dir models/deeplabv3/1
    python benchmarks/serving_overhead.py --version-dir models/deeplabv3/1 --rounds 40 --frames 8

Prints whether both paths agree pixel for pixel, then a markdown table: per path (raw uint8
frames through ``serving_default``, JPEG bytes through ``segment_jpeg``) the median and
min–max latency per request in ms and the request and response bytes; then the server/in-process
ratio for raw frames (aim: ≤ 1.02) and for JPEG bytes, each as the median (min–max) of the
per-round ratios of summed latencies, plus the ratio of the median latencies; then the command.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from client import contract
from training.data.synth import synthetic_frame
from training.export.publish import existing_versions
from training.export.warmup import encode_rgb

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on \S+:(\d+) \(gRPC\)")
MAX_MESSAGE = 64 * 1024 * 1024
PATHS = ("in-process raw", "server raw", "in-process JPEG", "server JPEG")


@dataclass(frozen=True)
class Frame:
    raw: np.ndarray  # [1, H, W, 3] uint8
    jpeg: np.ndarray  # [1] object (bytes)


@dataclass
class Outcome:
    """One request: its latency, its class map and the bytes on the wire (0 in-process)."""

    ms: float
    class_map: np.ndarray
    request_bytes: int = 0
    response_bytes: int = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version-dir", type=Path, required=True, help="exported version, e.g. models/deeplabv3/1"
    )
    parser.add_argument(
        "--model-name", default=contract.DEFAULT_MODEL_NAME, help="name the server serves it as"
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
    parser.add_argument("--frames", type=int, default=4, help="distinct frames, cycled")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes per path")
    parser.add_argument(
        "--intra-op-threads", type=int, default=os.cpu_count(), help="both sides (server default)"
    )
    parser.add_argument(
        "--inter-op-threads", type=int, default=1, help="both sides (server default)"
    )
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to load")
    args = parser.parse_args()
    if args.rounds < 1 or args.frames < 1:
        parser.error("--rounds and --frames must be at least 1")
    return args


def check_version_dir(version_dir: Path) -> int:
    """The version number; exits with a message if the server would not serve this folder."""
    make = "make one with: python -m training export --run RUN --models-dir models"
    if not (version_dir / "saved_model.pb").is_file():
        sys.exit(f"error: no exported model version at {version_dir} ({make})")
    if not version_dir.name.isdigit():
        sys.exit(f"error: {version_dir} is not an integer version folder ({make})")
    version, newest = int(version_dir.name), max(existing_versions(version_dir.parent))
    if version != newest:
        sys.exit(
            f"error: the server serves the newest version under {version_dir.parent} "
            f"({newest}), not {version}: pass {version_dir.parent / str(newest)}"
        )
    return version


def make_frames(count: int, height: int, width: int) -> list[Frame]:
    frames = []
    for seed in range(count):
        rgb = synthetic_frame(height, width, seed=seed)
        frames.append(Frame(rgb[None], np.array([encode_rgb(rgb, ".jpg")], dtype=object)))
    return frames


class InProcess:
    """The SavedModel's signatures called here, as the server's handler calls them."""

    def __init__(self, version_dir: Path):
        self._model = tf.saved_model.load(str(version_dir), tags=["serve"])
        self._signatures = self._model.signatures

    def run(self, signature: str, name: str, array: np.ndarray) -> Outcome:
        start = time.perf_counter()
        # As the server's handler does: the optional output size filled in (its default).
        function = self._signatures[signature]
        defaults = {
            key: value
            for key, value in contract.INPUT_DEFAULTS.items()
            if key in function.structured_input_signature[1]
        }
        outputs = function(**defaults, **{name: array})
        class_map, _ = outputs[contract.CLASS_MAP].numpy(), outputs[contract.CONFIDENCE].numpy()
        return Outcome((time.perf_counter() - start) * 1000, class_map)

    def raw(self, frame: Frame) -> Outcome:
        return self.run(contract.SEGMENT.name, contract.IMAGES, frame.raw)

    def jpeg(self, frame: Frame) -> Outcome:
        return self.run(contract.SEGMENT_JPEG.name, contract.JPEG, frame.jpeg)


class ServerClient:
    """A Predict client with the official TF Serving stubs."""

    def __init__(self, port: int, model_name: str, version: int):
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._model_name, self._version = model_name, version

    def run(self, signature: str, name: str, array: np.ndarray) -> Outcome:
        start = time.perf_counter()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self._model_name
        request.model_spec.version.value = self._version  # NOT_FOUND if another is served
        request.model_spec.signature_name = signature
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        response = self._stub.Predict(request, timeout=120)
        class_map = tf.make_ndarray(response.outputs[contract.CLASS_MAP])
        tf.make_ndarray(response.outputs[contract.CONFIDENCE])
        ms = (time.perf_counter() - start) * 1000
        return Outcome(ms, class_map, request.ByteSize(), response.ByteSize())

    def raw(self, frame: Frame) -> Outcome:
        return self.run(contract.SEGMENT.name, contract.IMAGES, frame.raw)

    def jpeg(self, frame: Frame) -> Outcome:
        return self.run(contract.SEGMENT_JPEG.name, contract.JPEG, frame.jpeg)


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def start_server(args: argparse.Namespace, log) -> tuple[subprocess.Popen, int]:
    """``python -m serving`` in its own process; returns it and its port once it listens."""
    command = [
        sys.executable,
        "-m",
        "serving",
        "--model-name",
        args.model_name,
        "--model-base-path",
        str(args.version_dir.parent.resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--intra-op-threads",
        str(args.intra_op_threads),
        "--inter-op-threads",
        str(args.inter_op_threads),
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        match = LISTENING.search(line)
        if match:
            return process, int(match.group(1))
    process.kill()
    process.wait()
    log.seek(0)
    tail = "".join(log.readlines()[-20:])
    sys.exit(f"error: the server did not start (exit {process.returncode}):\n{tail}")


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM, as an orchestrator stops it; returns its exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def warm_up(
    paths: dict[str, Callable[[Frame], Outcome]], frames: list[Frame], passes: int
) -> dict[str, float]:
    """Untimed passes over every frame; returns how often each server path's class maps match
    the in-process ones (fraction of pixels)."""
    agreement: dict[str, list[float]] = {"raw": [], "JPEG": []}
    for _ in range(passes):
        for frame in frames:
            outcomes = {path: run(frame) for path, run in paths.items()}
            for kind, values in agreement.items():
                ours = outcomes[f"in-process {kind}"].class_map
                served = outcomes[f"server {kind}"].class_map
                values.append(float(np.mean(ours == served)))
    return {kind: min(values) for kind, values in agreement.items()}


def timed_rounds(
    paths: dict[str, Callable[[Frame], Outcome]], frames: list[Frame], rounds: int
) -> list[dict[str, list[Outcome]]]:
    """Per round, each path's outcomes over all frames; in-process and server take turns
    going first."""
    results = []
    for index in range(rounds):
        outcomes: dict[str, list[Outcome]] = {path: [] for path in paths}
        for frame in frames:
            for kind in ("raw", "JPEG"):
                pair = [f"in-process {kind}", f"server {kind}"]
                for path in pair if index % 2 == 0 else reversed(pair):
                    outcomes[path].append(paths[path](frame))
        results.append(outcomes)
    return results


def _ratios(results: list[dict[str, list[Outcome]]], kind: str) -> list[float]:
    def total(outcomes: list[Outcome]) -> float:
        return sum(o.ms for o in outcomes)

    return [total(r[f"server {kind}"]) / total(r[f"in-process {kind}"]) for r in results]


def _span(sizes: list[int]) -> str:
    low, high = min(sizes), max(sizes)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def report(results: list[dict[str, list[Outcome]]]) -> str:
    latencies = {path: [o.ms for r in results for o in r[path]] for path in PATHS}
    lines = [
        "| path | median ms | min–max ms | request bytes | response bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        ms = latencies[path]
        outcomes = [o for r in results for o in r[path]]
        wire = ("–", "–")
        if path.startswith("server"):
            wire = (
                _span([o.request_bytes for o in outcomes]),
                _span([o.response_bytes for o in outcomes]),
            )
        lines.append(
            f"| {path} | {statistics.median(ms):.2f} | {min(ms):.2f}–{max(ms):.2f} "
            f"| {wire[0]} | {wire[1]} |"
        )
    lines.append("")
    for kind, aim in (("raw", " (aim ≤ 1.02)"), ("JPEG", "")):
        ratios = _ratios(results, kind)
        of_medians = statistics.median(latencies[f"server {kind}"]) / statistics.median(
            latencies[f"in-process {kind}"]
        )
        lines.append(
            f"server/in-process, {kind}: median of {len(ratios)} per-round ratios "
            f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
            f"{aim}; ratio of medians {of_medians:.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    version = check_version_dir(args.version_dir)

    # Before TensorFlow runs anything, as `python -m serving` does with the same values.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    frames = make_frames(args.frames, args.height, args.width)
    in_process = InProcess(args.version_dir)
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        process, port = start_server(args, log)
        try:
            print(
                f"server pid {process.pid} listening on 127.0.0.1:{port} after "
                f"{time.perf_counter() - started:.1f} s (loads and replays warmup records)"
            )
            client = ServerClient(port, args.model_name, version)
            paths = {
                "in-process raw": in_process.raw,
                "server raw": client.raw,
                "in-process JPEG": in_process.jpeg,
                "server JPEG": client.jpeg,
            }
            agreement = warm_up(paths, frames, args.warmup)
            print(
                f"class maps, server vs in-process (worst frame): raw {agreement['raw']:.2%} of "
                f"pixels equal, JPEG {agreement['JPEG']:.2%}"
            )
            results = timed_rounds(paths, frames, args.rounds)
            client.channel.close()
        finally:
            status = stop_server(process)

    jpeg_sizes = [len(f.jpeg[0]) for f in frames]
    print(
        f"\n{args.model_name} version {version} ({args.version_dir}), {args.frames} frames of "
        f"{args.height}×{args.width} (raw {args.height * args.width * 3:,} bytes, JPEG "
        f"{min(jpeg_sizes):,}–{max(jpeg_sizes):,} bytes), batch 1, {args.rounds} rounds; "
        f"TensorFlow threads intra-op {args.intra_op_threads}, inter-op {args.inter_op_threads}\n"
    )
    print(report(results))
    print(f"\nserver exit status after SIGTERM: {status}")
    print(f"command: python {shlex.join(sys.argv)}")
    if status != 0:
        sys.exit(f"error: the server exited {status} on SIGTERM (expected 0)")


if __name__ == "__main__":
    main()
