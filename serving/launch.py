"""``make serve``: TF Serving on the GPU when this machine can run it, else the embedded server.

TF Serving (``Dockerfile.serve``) needs Docker with the NVIDIA runtime; without them (no
Docker, no GPU, CI, a laptop) the embedded server answers the same gRPC API on the same port.
Either way the model repository is ``models/`` read in place, and the command says which
server runs, where, and which versions it serves. With no exported version it names the
command that makes one and exits 1.

    python -m serving launch [--models-dir models] [--engine auto|docker|embedded]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from client.contract import GRPC_PORT, REST_PORT, version_folders

IMAGE = "rc-seg-serve"


def docker_with_nvidia() -> bool:
    """Docker's daemon answers and knows the ``nvidia`` runtime (NVIDIA Container Toolkit)."""
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{json .Runtimes}}"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if info.returncode != 0:
        return False
    try:
        return "nvidia" in json.loads(info.stdout or "{}")
    except ValueError:
        return False


def exported_versions(models_dir: Path) -> dict[str, list[int]]:
    """Integer version folders of every model named in ``models.config``."""
    from serving.model_config import read_model_config

    versions = {}
    for source in read_model_config(models_dir / "models.config"):
        path = models_dir / source.base_path.name
        versions[source.name] = list(version_folders(path))
    return versions


def _docker_commands(models_dir: Path) -> list[list[str]]:
    return [
        ["docker", "build", "-f", "Dockerfile.serve", "-t", IMAGE, "."],
        [
            # --init: tensorflow_model_server as PID 1 would ignore Ctrl-C / docker stop.
            "docker", "run", "--rm", "--init", "--gpus", "all",
            "-p", f"{GRPC_PORT}:{GRPC_PORT}", "-p", f"{REST_PORT}:{REST_PORT}",
            "-v", f"{models_dir.resolve()}:/models", IMAGE,
        ],
    ]  # fmt: skip


def _embedded_command(models_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "serving",
        "--model-config", str(models_dir / "models.config"),
        "--port", str(GRPC_PORT),
        # TF Serving's REST API, with its metrics at the same path, on TF Serving's port.
        "--rest-port", str(REST_PORT),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving launch", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--engine", choices=("auto", "docker", "embedded"), default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, then exit")
    args = parser.parse_args(argv)

    from serving.model_config import ModelConfigError

    try:
        versions = exported_versions(args.models_dir)
    except ModelConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    missing = [name for name, found in versions.items() if not found]
    if missing:
        for name in missing:
            print(
                f"error: no exported version of {name} in {args.models_dir / name}/; make one "
                f"with: python -m training export --run runs/NAME --models-dir {args.models_dir}"
                f" --name {name}",
                file=sys.stderr,
            )
        return 1
    docker = args.engine == "docker" or (args.engine == "auto" and docker_with_nvidia())
    for name, found in versions.items():
        print(f"model {name}: versions {found} in {args.models_dir / name}")
    if docker:
        print(
            f"engine: TF Serving (Dockerfile.serve, GPU) — gRPC localhost:{GRPC_PORT}, "
            f"REST and metrics http://localhost:{REST_PORT}"
        )
        commands = _docker_commands(args.models_dir)
    else:
        print(
            "engine: embedded server (no Docker with the NVIDIA runtime here) — gRPC "
            f"localhost:{GRPC_PORT}, metrics "
            f"http://localhost:{REST_PORT}/monitoring/prometheus/metrics"
        )
        commands = [_embedded_command(args.models_dir)]
    sys.stdout.flush()
    for command in commands:
        print("$ " + " ".join(command), flush=True)
        if args.dry_run:
            continue
        if command is commands[-1]:
            os.execvp(command[0], command)  # the server becomes this process (signals, exit)
        subprocess.run(command, check=True)
    return 0
