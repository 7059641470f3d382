"""`python -m serving demo` end to end: real server and gateway processes, real client CLIs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import cv2
from mcap.reader import make_reader

from tests.conftest import REPO
from tests.helpers import copy_version


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_demo_streams_serves_and_stops_what_it_started(
    exported_version, trained_run, synth_root, tmp_path
):
    models = tmp_path / "models"
    (models / "deeplabv3").mkdir(parents=True)
    shutil.copy(REPO / "models" / "models.config", models)
    copy_version(exported_version, models / "deeplabv3", 1)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "serving", "demo", "--models", str(models), "--run",
         str(trained_run.path),
         "--images", str(synth_root / "JPEGImages"), "--out", str(out), "--scenes", "3",
         "--fps", "8"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "DISPLAY": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stage (ms)" in done.stdout and "fps:" in done.stdout  # the latency table
    assert "[server] stopped" in done.stdout
    server_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", done.stdout).group(1))
    gateway_port = int(re.search(r"gateway on http://127\.0\.0\.1:(\d+)", done.stdout).group(1))
    assert not _listening(server_port) and not _listening(gateway_port)
    assert "specific { versions: 1 }" in (out / "demo_models.config").read_text()
    results = json.loads((out / "latency.json").read_text())
    assert results["counts"]["ok"] > 0 and results["counts"]["failed"] == 0
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 3 * 8
    grid = cv2.imread(str(out / "predictions.png"))
    assert grid is not None and grid.shape[0] >= 3 * 120
    assert done.stdout.count("ms in the gateway") == 3
    for name in ("drive.mp4", "latency.png"):
        assert (out / name).stat().st_size > 0
    # The drive as MCAP for Foxglove, every frame with its costmap, and the costmaps picture.
    with (out / "drive.mcap").open("rb") as drive:
        summary = make_reader(drive).get_summary()
    costmap = next(c for c in summary.channels.values() if c.topic == "/costmap")
    assert summary.schemas[costmap.schema_id].name == "foxglove.Grid"
    assert summary.statistics.channel_message_counts[costmap.id] == 3 * 8
    assert "24 frames, 24 costmaps" in done.stdout
    assert cv2.imread(str(out / "costmaps.png")).shape[0] >= 4 * 240


def test_demo_fails_cleanly_without_the_runs_version(exported_version, synth_root, tmp_path):
    models = tmp_path / "models"
    (models / "deeplabv3").mkdir(parents=True)
    copy_version(exported_version, models / "deeplabv3", 1)
    done = subprocess.run(
        [sys.executable, "-m", "serving", "demo", "--models", str(models), "--run",
         str(tmp_path / "another-run"), "--images", str(synth_root / "JPEGImages"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "demo: failed: no version in" in done.stderr and "another-run" in done.stderr
