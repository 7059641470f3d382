"""`python -m client bench|view` as a user runs them: fresh processes, a real server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import cv2
import pytest

from client.synthetic import synthetic_frames
from tests.helpers import free_port


def run_client(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DISPLAY": ""},
    )


def test_bench_writes_the_table_json_and_plot(target, tmp_path):
    out, plot = tmp_path / "results.json", tmp_path / "latency.png"
    done = run_client(
        "bench", "--target", target, "--source", "synthetic", "--size", "96x128",
        "--frames", "12", "--warmup", "2", "--in-flight", "2", "--out", str(out),
        "--plot", str(plot),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for stage in ("latency", "capture_wait", "encode", "rpc", "decode"):
        assert stage in done.stdout
    assert "fps:" in done.stdout and "dropped frames:" in done.stdout
    results = json.loads(out.read_text())
    assert results["counts"]["ok"] == 12 and len(results["frames"]) == 12
    assert results["settings"]["in_flight"] == 2 and results["settings"]["transport"] == "raw"
    assert results["bytes_per_frame"]["request"] > 96 * 128 * 3
    p50 = results["stages_ms"]["latency"]["p50"]
    assert 0 < results["stages_ms"]["rpc"]["p50"] <= results["stages_ms"]["latency"]["max"]
    assert p50 <= results["stages_ms"]["latency"]["p99"]
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[0] > 200


def test_bench_jpeg_to_csv(target, tmp_path):
    out = tmp_path / "results.csv"
    done = run_client(
        "bench", "--target", target, "--size", "96x128", "--frames", "5", "--warmup", "0",
        "--transport", "jpeg", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and all(row["ok"] == "True" for row in rows)
    assert all(int(row["request_bytes"]) < 96 * 128 * 3 for row in rows)


def test_view_writes_an_overlay_video_of_every_frame(target, tmp_path):
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for frame in synthetic_frames(15, size=(96, 128)):
        writer.write(frame)
    writer.release()
    out = tmp_path / "overlay.mp4"
    done = run_client("view", "--target", target, "--source", str(video), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "15 frames" in done.stdout
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 15
    ok, first = capture.read()
    assert ok and first.shape == (96, 128, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "no-such-video.mp4"], "could not open video source"),
        (["--size", "big"], "expected HEIGHTxWIDTH"),
        (["--size", "0x0"], "expected HEIGHTxWIDTH"),
        (["--frames", "0"], "--frames: expected a whole number ≥ 1, got '0'"),
        (["--warmup", "-1"], "--warmup: expected a whole number ≥ 0"),
        (["--fps", "-5"], "--fps: expected frames per second ≥ 0"),
        (["--timeout", "0"], "--timeout: expected seconds > 0"),
        (["--out", "results.txt"], "--out results.txt: use a .json or .csv file"),
        (["--plot", "latency.jpg"], "name it .png"),
        (["--out", "/etc/passwd/results.json"], "error: "),
    ],
)
def test_bad_arguments_are_named(target, args, message):
    done = run_client("bench", "--target", target, "--frames", "1", *args)
    assert done.returncode != 0 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_target_without_a_port_is_refused():
    done = run_client("bench", "--target", "localhost")
    assert done.returncode == 2 and "expected HOST:PORT like localhost:8500" in done.stderr


def test_unreachable_server(tmp_path):
    done = run_client(
        "bench", "--target", f"127.0.0.1:{free_port()}", "--ready-timeout", "1", "--quiet"
    )
    assert done.returncode == 1
    assert "error: model 'deeplabv3' not available" in done.stderr
