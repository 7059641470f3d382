"""``python -m serving demo``: the serving half of ``make demo``, on an exported model.

Starts the embedded model server on the model repository and the HTTP gateway in front of it
(subprocesses on free ports of 127.0.0.1), makes a short drive video from held-out scenes,
streams it through the edge client (``python -m client bench``, ``view`` and ``record``, as a
user would run them: latency, an overlay video, the drive as MCAP with ground costmaps), sends
held-out images through the gateway, writes what it made under ``--out`` and stops what it
started, whatever happens.

    python -m serving demo --models models --images demo_out/voc_synth/JPEGImages \\
        --list demo_out/runs/demo/splits/test.txt --out demo_out
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import numpy as np

from client import contract
from client.overlay import draw_legend, side_by_side

_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# The synthetic scenes' camera: low on a small car, its horizon about 40 % down the frame
# (training/data/synth.py puts it between 30 and 50 %); every object is an obstacle.
DEMO_CAMERA = ("--camera-height", "0.3", "--camera-pitch", "6", "--camera-hfov", "70",
               "--ahead", "6", "--side", "3")  # fmt: skip
# TensorFlow's C++ start-up lines that no setting silences (absl logs before its own init).
_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]0000 )")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _process(command: list[str], ready: re.Pattern, name: str, timeout: float = 180):
    """Starts ``command``, waits for a stdout line matching ``ready`` and yields
    ``(match, process)``; echoes the process's output prefixed with ``name``; stops it with
    SIGTERM (then SIGKILL) at exit, whatever ended the block."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=_ENV,
    )
    found: list[re.Match] = []
    seen = threading.Event()

    def pump():
        for line in process.stdout:
            match = ready.search(line)
            if match and not found:
                found.append(match)
                seen.set()
            if not _NOISE.match(line):
                print(f"  [{name}] {line.rstrip()}", flush=True)
        seen.set()

    echo = threading.Thread(target=pump, daemon=True)
    echo.start()
    try:
        if not seen.wait(timeout) or not found:
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = "still running"
            raise RuntimeError(f"{name} did not start (exit code {code})")
        yield found[0], process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        echo.join(timeout=5)  # its last lines ("stopped") are printed before we go on


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s")
        time.sleep(0.2)


def demo_config(models: Path, run: Path, out: Path) -> Path:
    """A ModelServerConfig that serves exactly the version exported from ``run`` (the
    repository may hold newer versions of the user's own), written to ``out``."""
    base = (models / contract.DEFAULT_MODEL_NAME).resolve()
    versions = contract.versions_exported_from(base, run)
    if not versions:
        raise FileNotFoundError(f"no version in {base} was exported from {run}")
    config = out / "demo_models.config"
    config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{contract.DEFAULT_MODEL_NAME}"\n'
        f'    base_path: "{base}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ versions: {max(versions)} }} }}\n  }}\n}}\n"
    )
    return config


def held_out_images(images: Path, list_file: Path | None, count: int) -> list[Path]:
    """The images named in a split list (or the first in the folder), at most ``count``."""
    if list_file is not None:
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        paths = [images / f"{image_id}.jpg" for image_id in ids]
    else:
        paths = sorted(images.glob("*.jpg"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"images named in {list_file} are missing: {missing[:3]}")
    if not paths:
        raise FileNotFoundError(f"no .jpg images in {images}")
    return paths[:count]


def write_drive_video(paths: Sequence[Path], out: Path, fps: float, hold: int) -> int:
    """A video that shows each scene for ``hold`` frames, drifting slowly sideways (so
    consecutive frames differ as a camera's do); returns the frame count."""
    first = cv2.imread(str(paths[0]))
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {out}")
    frames = 0
    for path in paths:
        scene = cv2.resize(cv2.imread(str(path)), (width, height))
        for step in range(hold):
            shift = np.float32([[1, 0, step * 2 - hold], [0, 1, 0]])
            writer.write(
                cv2.warpAffine(scene, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
            )
            frames += 1
    writer.release()
    return frames


def _post(url: str, data: bytes):
    """The answer's body and headers (a case-insensitive mapping)."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read(), response.headers


def gateway_predictions(gateway: str, paths: Sequence[Path], out: Path) -> list[str]:
    """Sends images through the gateway; writes a grid of original | overlay rows with a
    legend of the classes found, and returns a line per image."""
    with urllib.request.urlopen(f"{gateway}/v1/model", timeout=10) as response:
        model = json.load(response)
    palette = np.array(model["palette"], np.uint8)
    rows, lines = [], []
    for path in paths:
        data = path.read_bytes()
        overlay_bytes, headers = _post(f"{gateway}/v1/segment?format=overlay&alpha=0.6", data)
        overlay = cv2.imdecode(np.frombuffer(overlay_bytes, np.uint8), cv2.IMREAD_COLOR)
        present = [int(v) for v in headers.get("X-Classes-Present", "").split(",") if v]
        objects = [i for i in present if i != 0]
        overlay = draw_legend(overlay, objects, model["class_names"], palette=palette)
        rows.append(side_by_side(cv2.imread(str(path)), overlay))
        timing = headers.get("Server-Timing", "")
        total = re.search(r"total;dur=([\d.]+)", timing)
        names = ", ".join(model["class_names"][i] for i in objects) or "nothing"
        lines.append(f"{path.name}: {names} ({total.group(1) if total else '?'} ms in the gateway)")
    width = max(row.shape[1] for row in rows)
    grid = np.vstack(
        [cv2.copyMakeBorder(r, 0, 4, 0, width - r.shape[1], cv2.BORDER_CONSTANT) for r in rows]
    )
    cv2.imwrite(str(out), grid)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="model repository")
    parser.add_argument(
        "--run", type=Path, help="serve the version exported from this run (default: latest)"
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of held-out JPEGs")
    parser.add_argument("--list", type=Path, help="split list naming the held-out images")
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--scenes", type=int, default=12, help="scenes in the drive video")
    parser.add_argument("--fps", type=float, default=10.0, help="drive video frame rate")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    # A plain `kill` (a CI cancel, a closed terminal) must stop the children too: turn it into
    # an exit that runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return _run(args)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as error:
        print(f"demo: failed: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    config = args.models / "models.config"
    if args.run is not None:
        config = demo_config(args.models, args.run, args.out)
    paths = held_out_images(args.images, args.list, args.scenes)
    video = args.out / "drive.mp4"
    frames = write_drive_video(paths, video, args.fps, hold=int(args.fps))
    print(f"demo: drive video {video} ({frames} frames of {len(paths)} held-out scenes)")

    python = sys.executable
    with ExitStack() as running:
        print("demo: starting the embedded model server …", flush=True)
        listening, _ = running.enter_context(
            _process(
                [python, "-m", "serving", "--model-config", str(config),
                 "--host", "127.0.0.1", "--port", "0"],
                re.compile(r"listening on 127\.0\.0\.1:(\d+)"),
                "server",
            )
        )  # fmt: skip
        target = f"127.0.0.1:{listening.group(1)}"
        port = _free_port()
        gateway = f"http://127.0.0.1:{port}"
        print(f"demo: starting the gateway on {gateway} …", flush=True)
        _, gateway_process = running.enter_context(
            _process(
                [python, "-m", "serving", "gateway", "--target", target,
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                re.compile(r"gateway for"),
                "gateway",
            )
        )  # fmt: skip
        _wait_http(f"{gateway}/readyz", gateway_process)

        print(f"\ndemo: per-frame latency, the drive video streamed through the client ({target})")
        results, plot = args.out / "latency.json", args.out / "latency.png"
        bench = [python, "-m", "client", "bench", "--target", target, "--source", str(video),
                 "--frames", str(frames - 3), "--warmup", "3", "--quiet",
                 "--out", str(results), "--plot", str(plot)]  # fmt: skip
        subprocess.run(bench, check=True, env=_ENV)

        print("\ndemo: overlay video through the client")
        view = [python, "-m", "client", "view", "--target", target, "--source", str(video),
                "--out", str(args.out / "overlay.mp4"), "--show", "no"]  # fmt: skip
        subprocess.run(view, check=True, env=_ENV)

        print("\ndemo: the drive recorded as MCAP for Foxglove, with ground costmaps")
        record = [python, "-m", "client", "record", "--target", target, "--source", str(video),
                  "--frames", str(frames), "--out", str(args.out / "drive.mcap"),
                  "--picture", str(args.out / "costmaps.png"), *DEMO_CAMERA]  # fmt: skip
        subprocess.run(record, check=True, env=_ENV)

        print(f"\ndemo: held-out images through the gateway ({gateway}/v1/segment)")
        for line in gateway_predictions(gateway, paths[:4], args.out / "predictions.png"):
            print(f"  {line}")
        print("\ndemo: stopping the gateway and the server")
    print(
        f"\ndemo: done. In {args.out}/: overlay.mp4 (the drive with class colours), "
        "predictions.png (held-out images through the gateway), latency.json and latency.png "
        "(per-frame latency), drive.mcap (the drive for Foxglove: frames, class maps, "
        "costmaps, latency; open it at app.foxglove.dev or in Foxglove's desktop app), "
        "costmaps.png (frames beside their ground costmaps), drive.mp4 (the input).\n"
        f"      Serve the model yourself: make serve  (then python -m serving gateway, and open "
        f"http://localhost:{contract.GATEWAY_PORT}/)"
    )
    return 0
