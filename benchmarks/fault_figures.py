"""The figures of the fault fixes, measured on real processes on 127.0.0.1: the gateway
(``python -m serving gateway``) and the model server (``python -m serving``) run as they do in
production, each in a process of its own, and this script talks to them over HTTP and gRPC.

    python benchmarks/fault_figures.py
    python benchmarks/fault_figures.py --only 503 --only healthz
    python benchmarks/fault_figures.py --version-dir models/deeplabv3/1 --sigterm-runs 5

1. **503 with the model server down** (``--only 503``). Two gateways point at a port where
   nothing listens: ours with its defaults (``--timeout 30 --connect-timeout 1``) and the
   reference, the gateway as it behaved before (it retried until the whole deadline ran out:
   ``--timeout`` and ``--connect-timeout`` both ``--reference-timeout``). A small JPEG is
   POSTed to ``/v1/segment`` ``--runs`` times to each, interleaved: status and seconds to the
   answer, and the ``detail`` the gateway gives. Goal: 503 within about a second, naming the
   target.
2. **/healthz under load** (``--only healthz``). The model server hangs: a TCP socket that
   listens and never accepts or answers (gRPC connects at TCP level, then waits). The gateway
   (``--timeout 20 --connect-timeout 20``) gets 60 concurrent uploads; once they are all in
   it, 30 sequential ``GET /healthz`` (one every 50 ms) are timed, as are 30 with no load
   before. Goal: median, p90 and max ≤ 100 ms with all 60 uploads still in flight.
3. **Requests lost at SIGTERM** (``--only sigterm``). ``python -m serving --workers 4
   --max-concurrent 1 --grace 120`` gets 8 callers at once, each with eight 720p JPEGs through
   ``segment_jpeg`` (seconds of work each): one runs, three wait for the model slot, four for a
   request thread. SIGTERM goes once the server's ``rcseg_requests_received`` gauge counts all
   8. Goal: 0 lost (every caller answered), exit status 0; ``--sigterm-runs`` times.
4. **The restart case** (``--only restart``). The server starts on a base path with versions 1
   and 2 (copies of ``--version-dir``) and a version 3 whose ``saved_model.pb`` is 4096 random
   bytes: its startup lines, gRPC health for ``""`` and ``tensorflow.serving.PredictionService``,
   the version that answers a Predict, and GetModelStatus. Goal: version 2 answers, health
   SERVING, version 3 END with its error message.

``--version-dir`` (scenarios 3 and 4) defaults to the newest exported version found under
``models/`` and ``demo_out/`` (``make demo`` leaves one). Prints the date, the machine, one
markdown table (or a few) per scenario, then the command.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NoReturn

import cv2
import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from client import contract

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("503", "healthz", "sigterm", "restart")
LARGE_MESSAGES = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
GATEWAY_STARTED = re.compile(r"gateway for \S+ on ")
SERVER_LISTENING = re.compile(
    r"listening on 127\.0\.0\.1:(\d+) \(gRPC\), metrics http://127\.0\.0\.1:(\d+)/"
)
CHILD_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
UPLOADS = 60
PROBES = 30
CALLERS = 8
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


# -- processes ------------------------------------------------------------------------------


class Child:
    """A process this script started: its stdout lines gathered by a thread, stderr kept in a
    file for when it fails."""

    def __init__(self, command: Sequence[str], log: IO[str]):
        self.command = list(command)
        self._log = log
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=CHILD_ENV,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        """The first stdout line matching ``pattern``; exits naming the failure if the process
        ends or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    break
                self._changed.wait(left)
        self.kill()
        self.fail(f"no line matching {pattern.pattern!r} within {timeout:.0f} s")

    def fail(self, reason: str) -> NoReturn:
        self._log.seek(0)
        tail = "".join(self._log.readlines()[-20:])
        sys.exit(
            f"error: {shlex.join(self.command)}: {reason} (exit {self.process.poll()}):\n"
            f"{chr(10).join(self.lines[-10:])}\n{tail}"
        )

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator stops it; killed if it is not gone within ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def started(command: Sequence[str]) -> Iterator[Child]:
    """A child process that is killed on the way out, whatever happened."""
    with tempfile.TemporaryFile("w+") as log:
        child = Child(command, log)
        try:
            yield child
        finally:
            child.kill()


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serving(*args: str) -> list[str]:
    return [sys.executable, "-m", "serving", *args]


@contextmanager
def gateway(target: str, *flags: str) -> Iterator[int]:
    """``python -m serving gateway`` for ``target``; yields its port once /healthz answers."""
    port = free_port()
    command = serving(
        "gateway", "--target", target, "--host", "127.0.0.1", "--port", str(port), *flags
    )
    with started(command) as child:
        child.wait_for(GATEWAY_STARTED, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if child.process.poll() is not None or time.monotonic() > deadline:
                child.fail("/healthz never answered")
            time.sleep(0.05)
        try:
            yield port
        finally:
            child.terminate(timeout=30)


@contextmanager
def model_server(base_path: Path, model: str, *flags: str) -> Iterator[tuple[Child, int, int]]:
    """``python -m serving`` on ``base_path``; yields it, its gRPC and its metrics port once
    it listens (after loading and replaying warmup records)."""
    command = serving(
        "--model-name", model, "--model-base-path", str(base_path),
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", *flags,
    )  # fmt: skip
    with started(command) as child:
        match = child.wait_for(SERVER_LISTENING, timeout=600)
        yield child, int(match.group(1)), int(match.group(2))


# -- HTTP -----------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post_jpeg(port: int, jpeg: bytes, timeout: float = 60) -> tuple[int, bytes, float]:
    """``POST /v1/segment`` with the JPEG as the raw body: status, body and seconds taken."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    begun = time.perf_counter()
    try:
        connection.request("POST", "/v1/segment", jpeg, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - begun
    finally:
        connection.close()


def small_jpeg() -> bytes:
    rows, cols = np.mgrid[0:96, 0:128]
    picture = np.stack([rows * 2, cols * 2, rows + cols], -1).astype(np.uint8)
    return cv2.imencode(".jpg", picture)[1].tobytes()


def detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


# -- formatting -----------------------------------------------------------------------------


def cell(text: object, limit: int = 120) -> str:
    """``text`` on one line, at most ``limit`` characters, safe in a markdown table."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")


def tally(values: Sequence[object]) -> str:
    """``503 ×7`` or ``503 ×5, 504 ×2``."""
    counts = collections.Counter(values)
    return ", ".join(f"{value} ×{count}" for value, count in sorted(counts.items(), key=str))


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


# -- 1. 503 with the model server down -----------------------------------------------------


def figure_503(args: argparse.Namespace) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    reference = f"{args.reference_timeout:g}"
    jpeg = small_jpeg()
    results: dict[str, list[tuple[int, float]]] = {"ours": [], "reference": []}
    details: dict[str, str] = {}
    with (
        gateway(down) as ours_port,
        gateway(down, "--timeout", reference, "--connect-timeout", reference) as reference_port,
    ):
        for index in range(args.runs):
            order = [("ours", ours_port), ("reference", reference_port)]
            for name, port in order if index % 2 == 0 else reversed(order):
                status, body, seconds = post_jpeg(port, jpeg)
                results[name].append((status, seconds))
                details.setdefault(name, detail(body))

    print(f"### 1. `POST /v1/segment` with the model server down ({down}, nothing listens)\n")
    print("| gateway | flags | requests | status | median s | min–max s |")
    print("|---|---|---:|---|---:|---:|")
    flags = {
        "ours": "defaults (`--timeout 30 --connect-timeout 1`)",
        "reference": f"`--timeout {reference} --connect-timeout {reference}` (before: the "
        "whole deadline)",
    }
    for name, outcomes in results.items():
        seconds = [s for _, s in outcomes]
        print(
            f"| {name} | {flags[name]} | {len(outcomes)} | {tally([s for s, _ in outcomes])} "
            f"| {statistics.median(seconds):.2f} | {min(seconds):.2f}–{max(seconds):.2f} |"
        )
    print(f"\nJPEG {len(jpeg):,} bytes; requests to the two gateways interleaved.")
    for name, text in details.items():
        print(f"detail ({name}): `{cell(text, 300)}`")
    print("\nGoal: 503 within about a second, naming the target.\n")


# -- 2. /healthz with uploads in flight -----------------------------------------------------


@contextmanager
def hung_server() -> Iterator[str]:
    """A TCP port that listens and never accepts or answers: a hung model server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def probe_healthz(port: int, count: int = PROBES, every: float = 0.05) -> list[float]:
    """``count`` sequential ``GET /healthz`` round trips (a new connection each, as a probe
    makes), in ms."""
    times = []
    for _ in range(count):
        begun = time.perf_counter()
        status, _ = http_get(port, "/healthz", timeout=30)
        times.append((time.perf_counter() - begun) * 1000)
        if status != 200:
            sys.exit(f"error: /healthz answered {status}")
        time.sleep(every)
    return times


@dataclass
class Upload:
    """One upload's outcome: its status (or the exception's name) and seconds, once done."""

    status: int | str | None = None
    seconds: float | None = None


def upload(port: int, jpeg: bytes, outcome: Upload) -> None:
    begun = time.perf_counter()
    try:
        outcome.status = post_jpeg(port, jpeg, timeout=60)[0]
    except OSError as error:
        outcome.status = type(error).__name__
    outcome.seconds = time.perf_counter() - begun


def figure_healthz(args: argparse.Namespace) -> None:
    jpeg = small_jpeg()
    with (
        hung_server() as target,
        gateway(target, "--timeout", "20", "--connect-timeout", "20") as port,
    ):
        idle = probe_healthz(port)
        outcomes = [Upload() for _ in range(UPLOADS)]
        threads = [threading.Thread(target=upload, args=(port, jpeg, o)) for o in outcomes]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # all of them in the gateway, waiting on the model server
        loaded = probe_healthz(port)
        in_flight = sum(o.status is None for o in outcomes)
        for thread in threads:
            thread.join(timeout=90)

    print(f"### 2. `GET /healthz` with the model server hung ({target}: listens, never accepts)\n")
    print("| load | probes | median ms | p90 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for load, times in (("none", idle), (f"{UPLOADS} uploads in flight", loaded)):
        print(
            f"| {load} | {len(times)} | {statistics.median(times):.1f} | {p90(times):.1f} "
            f"| {max(times):.1f} |"
        )
    done = [o for o in outcomes if o.seconds is not None]
    seconds = [o.seconds for o in done]
    print(
        f"\nGateway `--timeout 20 --connect-timeout 20`; one probe every 50 ms, a new "
        f"connection each. Uploads still in flight when probing ended: {in_flight} of "
        f"{UPLOADS}. Afterwards they got {tally([o.status for o in done]) or 'nothing'}"
        + (f" after {min(seconds):.1f}–{max(seconds):.1f} s" if seconds else "")
        + (f"; {UPLOADS - len(done)} never ended" if len(done) < UPLOADS else "")
        + "."
    )
    print(f"\nGoal: /healthz ≤ 100 ms with {UPLOADS} uploads in flight (all {UPLOADS} still).\n")


# -- 3. requests lost at SIGTERM ------------------------------------------------------------


def slow_jpeg_request(model: str) -> predict_pb2.PredictRequest:
    """Eight 720p JPEGs of a smooth picture: ~0.1 MB to send, seconds of work."""
    rows, cols = np.mgrid[0:720, 0:1280]
    picture = np.stack([rows % 256, cols % 256, (rows + cols) % 256], -1).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = contract.SEGMENT_JPEG.name
    request.inputs[contract.JPEG].CopyFrom(tf.make_tensor_proto([jpeg] * 8))
    request.output_filter.append(contract.CLASS_MAP)
    return request


def wait_for_gauge(metrics_port: int, gauge: str, count: float, timeout: float = 120) -> None:
    """Until the server's own ``gauge`` reaches ``count``."""
    url = f"http://127.0.0.1:{metrics_port}/monitoring/prometheus/metrics"
    deadline = time.monotonic() + timeout
    seen: set[float] = set()
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        value = float(re.search(rf"^{gauge} (\S+)", text, re.M).group(1))
        if value >= count:
            return
        seen.add(value)
        time.sleep(0.02)
    sys.exit(f"error: {gauge} never reached {count}: {sorted(seen)}")


@dataclass
class SigtermRun:
    answered: int
    lost: list[str]
    exit_status: int | None
    exit_seconds: float | None


def sigterm_once(base_path: Path, model: str, request: predict_pb2.PredictRequest) -> SigtermRun:
    flags = ("--workers", "4", "--max-concurrent", "1", "--grace", "120")
    with model_server(base_path, model, *flags) as (child, port, metrics_port):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=LARGE_MESSAGES)
        try:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            predict(request, timeout=180)  # warm: the next ones measure only their own work

            def call() -> str | None:
                try:
                    predict(request, timeout=180)
                    return None
                except grpc.RpcError as error:
                    return f"{error.code().name}: {error.details()}"

            exited: list[tuple[int, float]] = []

            def watch() -> None:
                status = child.process.wait()
                exited.append((status, time.monotonic()))

            with ThreadPoolExecutor(CALLERS) as pool:
                calls = [pool.submit(call) for _ in range(CALLERS)]
                wait_for_gauge(metrics_port, "rcseg_requests_received", CALLERS)
                signalled = time.monotonic()
                child.process.send_signal(signal.SIGTERM)
                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                answers = [c.result() for c in calls]
            watcher.join(timeout=180)
        finally:
            channel.close()
    lost = [a for a in answers if a is not None]
    status, seconds = exited[0] if exited else (None, None)
    return SigtermRun(
        len(answers) - len(lost), lost, status, None if seconds is None else seconds - signalled
    )


def figure_sigterm(args: argparse.Namespace) -> None:
    request = slow_jpeg_request(args.model_name)
    with tempfile.TemporaryDirectory(prefix="fault-figures-") as temp:
        base_path = Path(temp) / args.model_name
        base_path.mkdir()
        copy_version(args.version_dir, base_path, 1)
        runs = [sigterm_once(base_path, args.model_name, request) for _ in range(args.sigterm_runs)]

    print(f"### 3. Requests lost at SIGTERM, {CALLERS} callers\n")
    print("| run | answered | lost | server exit | SIGTERM → exit s |")
    print("|---:|---:|---:|---:|---:|")
    for index, run in enumerate(runs, 1):
        exit_seconds = "–" if run.exit_seconds is None else f"{run.exit_seconds:.1f}"
        exit_status = "did not exit" if run.exit_status is None else run.exit_status
        print(f"| {index} | {run.answered} | {len(run.lost)} | {exit_status} | {exit_seconds} |")
    print(
        f"\n`python -m serving --workers 4 --max-concurrent 1 --grace 120` on "
        f"{shown(args.version_dir)}; "
        f"each caller sends eight 1280×720 JPEGs through `{contract.SEGMENT_JPEG.name}` "
        f"(output_filter class_map); SIGTERM once `rcseg_requests_received` = {CALLERS}."
    )
    for index, run in enumerate(runs, 1):
        for text in run.lost:
            print(f"- run {index} lost: `{cell(text, 300)}`")
    print("\nGoal: 0 lost, exit status 0.\n")


# -- 4. the restart case --------------------------------------------------------------------


def copy_version(source: Path, base_path: Path, version: int) -> Path:
    """A copy of ``source`` published as ``base_path/version`` the way export does it: staged
    under a dot-name, then renamed (as ``tests/helpers.py::copy_version``)."""
    staging = base_path / f".copy-{version}"
    shutil.copytree(source, staging)
    return staging.rename(base_path / str(version))


def corrupt_version(base_path: Path, version: int) -> Path:
    """A version whose ``saved_model.pb`` is 4096 random bytes, published the same way."""
    staging = base_path / f".copy-{version}"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(os.urandom(4096))
    return staging.rename(base_path / str(version))


def health(channel: grpc.Channel, service: str) -> str:
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def answering_version(channel: grpc.Channel, model: str) -> str:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = contract.SEGMENT.name
    frame = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    request.inputs[contract.IMAGES].CopyFrom(tf.make_tensor_proto(frame))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        return str(stub.Predict(request, timeout=120).model_spec.version.value)
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"


def model_status(channel: grpc.Channel, model: str) -> list[tuple[int, str, str, str]]:
    """(version, state, error code, error message) per version GetModelStatus reports."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [
        (
            s.version,
            state_name(s.state),
            CODE_NAMES.get(s.status.error_code, str(s.status.error_code)),
            s.status.error_message,
        )
        for s in answer.model_version_status
    ]


def figure_restart(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fault-figures-") as temp:
        base_path = Path(temp) / args.model_name
        base_path.mkdir()
        copy_version(args.version_dir, base_path, 1)
        copy_version(args.version_dir, base_path, 2)
        corrupt_version(base_path, 3)
        with model_server(base_path, args.model_name) as (child, port, _):
            startup = list(child.lines)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            try:
                checks = [
                    (f'health `"{service}"`', health(channel, service))
                    for service in ("", "tensorflow.serving.PredictionService")
                ]
                checks.append(
                    (
                        f"Predict (`{contract.SEGMENT.name}`, one 64×64 frame) answered by version",
                        answering_version(channel, args.model_name),
                    )
                )
                statuses = model_status(channel, args.model_name)
            finally:
                channel.close()
            exit_status = child.terminate()

    print(
        f"### 4. The restart case: versions 1 and 2 copies of {shown(args.version_dir)}, "
        "version 3 a saved_model.pb of 4096 random bytes\n"
    )
    print("Server startup (stdout):\n\n```")
    print("\n".join(startup).replace(temp, "$TMP"))
    print("```\n")
    print("| check | answer |")
    print("|---|---|")
    for check, answer in checks:
        print(f"| {check} | {cell(answer)} |")
    print("\nGetModelStatus:\n")
    print("| version | state | error code | error message |")
    print("|---:|---|---|---|")
    for version, state, code, message in statuses:
        print(f"| {version} | {state} | {code} | {cell(message.replace(temp, '$TMP'))} |")
    print(f"\nServer exit status after SIGTERM: {exit_status}.")
    print("\nGoal: version 2 answers, health SERVING, version 3 END with its error.\n")


# -- main -----------------------------------------------------------------------------------


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies in it."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def newest_version_dir() -> Path | None:
    """The most recently exported version folder under models/ and demo_out/, if any."""
    found = [
        pb.parent
        for root in (REPO / "models", REPO / "demo_out")
        for pb in root.rglob("saved_model.pb")
        if pb.parent.name.isdigit()
    ]
    return max(found, key=lambda p: (p / "saved_model.pb").stat().st_mtime, default=None)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run this scenario (repeatable)"
    )
    parser.add_argument("--runs", type=int, default=7, help="503 requests per gateway")
    parser.add_argument(
        "--reference-timeout",
        type=float,
        default=5.0,
        help="the reference gateway's --timeout and --connect-timeout (s)",
    )
    parser.add_argument("--sigterm-runs", type=int, default=3, help="SIGTERM runs")
    parser.add_argument(
        "--version-dir",
        type=Path,
        help="exported version for sigterm and restart (default: the newest under models/ "
        "and demo_out/)",
    )
    parser.add_argument(
        "--model-name", default=contract.DEFAULT_MODEL_NAME, help="name the server serves it as"
    )
    args = parser.parse_args()
    args.only = [s for s in SCENARIOS if s in (args.only or SCENARIOS)]
    if args.runs < 1 or args.sigterm_runs < 1 or args.reference_timeout <= 0:
        parser.error("--runs, --sigterm-runs and --reference-timeout must be positive")
    if {"sigterm", "restart"} & set(args.only):
        args.version_dir = args.version_dir or newest_version_dir()
        if args.version_dir is None:
            sys.exit(
                "error: the sigterm and restart scenarios need an exported model and none is "
                "under models/ or demo_out/: run `make demo`, pass --version-dir, or run "
                "--only 503 --only healthz"
            )
        if not (args.version_dir / "saved_model.pb").is_file():
            sys.exit(f"error: no saved_model.pb in {args.version_dir}")
    return args


FIGURES: dict[str, Callable[[argparse.Namespace], None]] = {
    "503": figure_503,
    "healthz": figure_healthz,
    "sigterm": figure_sigterm,
    "restart": figure_restart,
}


def main() -> None:
    args = parse_args()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"## Fault figures\n\n{now}; machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}; processes on 127.0.0.1\n"
    )
    for name in args.only:
        FIGURES[name](args)
    print(f"command: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
