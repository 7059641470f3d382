"""The map at the planner's resolution: ``output_size`` against shrinking the full-size map.

A planner that works on a 120×160 grid can ask the model for it (``output_size``: the logits
are resized straight to it), or take the map at the frame's size and shrink it itself (the
reference path: what every client did before). Both ways, in one interleaved run, for the
model server (``python -m serving`` in its own process, ``SegmentationClient`` over gRPC on
127.0.0.1) and for the onboard exports (TFLite float32 and int8 through LiteRT, ONNX through
ONNX Runtime, ``OnboardSegmenter``):

    python benchmarks/output_size.py --run demo_out/runs/demo
    python benchmarks/output_size.py --run runs/voc --frame-size 480x640 --output-size 120x160

Each round sends every frame through every path (the order alternates from round to round);
a path's figure per round is its median latency per frame, reported as the median (min–max)
over rounds, with the response bytes per frame, the ratio output_size / reference per round,
and how many pixels of the two maps agree (they differ where the bilinear resize of the logits
and the nearest-neighbour shrink of the class map pick different classes: along edges).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from client import OnboardSegmenter, Segmentation, SegmentationClient
from client.synthetic import synthetic_frames
from training.export.verify import PLANNER_SIZE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_overhead import start_server, stop_server

Segment = Callable[[np.ndarray], Segmentation]


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("demo_out/runs/demo"))
    parser.add_argument("--frame-size", type=_size, default=(480, 640), metavar="HxW")
    parser.add_argument("--output-size", type=_size, default=PLANNER_SIZE, metavar="HxW")
    parser.add_argument("--frames", type=int, default=10, help="frames per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="onboard runtime threads")
    return parser.parse_args()


def export_models(run: Path, work: Path, frame_size: tuple[int, int]) -> dict[str, Path]:
    """The run's SavedModel version and its onboard variants, written under ``work``."""
    from training.export.onnx import export_onnx
    from training.export.publish import export_run
    from training.export.tflite import export_tflite

    version = export_run(run, work / "models", name="deeplabv3").path
    frame = (frame_size[0], frame_size[1])
    return {
        "savedmodel": version,
        "TFLite float32": export_tflite(run, work / "float32.tflite").path,
        "TFLite int8": export_tflite(
            run, work / "int8.tflite", optimize="int8", frame_size=frame
        ).path,
        "ONNX Runtime": export_onnx(run, work / "model.onnx").path,
    }


def shrunk(segment: Segment, size: tuple[int, int]) -> Segment:
    """The reference path: the map at the frame's size, shrunk here (nearest neighbour)."""

    def run(frame: np.ndarray) -> Segmentation:
        answer = segment(frame)
        small = cv2.resize(answer.class_map, size[::-1], interpolation=cv2.INTER_NEAREST)
        return Segmentation(
            small,
            None,
            answer.model_version,
            answer.timings,
            answer.request_bytes,
            answer.response_bytes,
            answer.source,
        )

    return run


def timed(segment: Segment, frame: np.ndarray) -> tuple[float, Segmentation]:
    started = time.perf_counter()
    answer = segment(frame)
    return (time.perf_counter() - started) * 1000, answer


def main() -> None:
    args = parse_args()
    frames = list(synthetic_frames(args.frames, size=args.frame_size, seed=3))
    with tempfile.TemporaryDirectory(prefix="output-size-") as folder:
        work = Path(folder)
        print(f"exporting {args.run} …", file=sys.stderr)
        models = export_models(args.run, work, args.frame_size)
        server_args = argparse.Namespace(
            model_name="deeplabv3",
            version_dir=models.pop("savedmodel"),
            intra_op_threads=args.threads,
            inter_op_threads=1,
            start_timeout=120,
        )
        with open(work / "server.log", "w+") as log:
            process, port = start_server(server_args, log)
            try:
                figures = measure(args, frames, port, models)
            finally:
                stop_server(process)
    print(report(figures, args))


def measure(
    args: argparse.Namespace, frames: list[np.ndarray], port: int, models: dict[str, Path]
) -> dict[str, dict[str, list]]:
    """Per path pair: per-round medians (ms) of both ways, bytes, and pixel agreement."""
    target = f"127.0.0.1:{port}"
    full_remote = SegmentationClient(target)
    small_remote = SegmentationClient(target, output_size=args.output_size)
    pairs: dict[str, tuple[Segment, Segment]] = {
        "model server (gRPC)": (
            shrunk(full_remote.segment, args.output_size),
            small_remote.segment,
        )
    }
    onboard = []
    for label, path in models.items():
        full = OnboardSegmenter(path, threads=args.threads)
        small = OnboardSegmenter(path, threads=args.threads, output_size=args.output_size)
        onboard += [full, small]
        pairs[label] = (shrunk(full.segment, args.output_size), small.segment)
    figures = {
        label: {"reference": [], "output_size": [], "bytes": [], "equal": []} for label in pairs
    }
    try:
        for reference, planner in pairs.values():  # warm-up: allocation, first calls
            for frame in frames[:2]:
                reference(frame), planner(frame)
        for round_index in range(args.rounds):
            order = list(pairs.items())
            if round_index % 2:
                order.reverse()
            for label, (reference, planner) in order:
                times = {"reference": [], "output_size": []}
                for frame in frames:
                    ways = [("reference", reference), ("output_size", planner)]
                    if round_index % 2:
                        ways.reverse()
                    answers = {}
                    for way, segment in ways:
                        ms, answers[way] = timed(segment, frame)
                        times[way].append(ms)
                    figures[label]["bytes"].append(
                        (answers["reference"].response_bytes, answers["output_size"].response_bytes)
                    )
                    same = answers["reference"].class_map == answers["output_size"].class_map
                    figures[label]["equal"].append(float(np.mean(same)))
                for way, values in times.items():
                    figures[label][way].append(statistics.median(values))
    finally:
        for segmenter in (full_remote, small_remote, *onboard):
            segmenter.close()
    return figures


def _span(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def report(figures: dict[str, dict[str, list]], args: argparse.Namespace) -> str:
    height, width = args.frame_size
    out_h, out_w = args.output_size
    lines = [
        f"{height}×{width} frames, maps wanted at {out_h}×{out_w}; {args.rounds} rounds of "
        f"{args.frames} frames; ms per frame: median (min–max) of the per-round medians",
        "",
        "| path | full map, shrunk by the client (ms) | output_size (ms) | ratio | "
        "response bytes (full → output_size) | equal pixels |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, values in figures.items():
        ratios = [s / r for r, s in zip(values["reference"], values["output_size"], strict=True)]
        full_bytes = statistics.median(b[0] for b in values["bytes"])
        small_bytes = statistics.median(b[1] for b in values["bytes"])
        size = f"{full_bytes:,.0f} → {small_bytes:,.0f}" if full_bytes else "— (onboard)"
        lines.append(
            f"| {label} | {_span(values['reference'])} | {_span(values['output_size'])} | "
            f"{_span(ratios, 2)} | {size} | {min(values['equal']):.1%} (lowest) |"
        )
    lines += ["", "command: python " + " ".join(sys.argv)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
