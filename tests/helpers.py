"""Small builders shared by test modules (fixtures stay in conftest.py files)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path


def write_random_run(path: Path, data: Path, input_size: tuple[int, int] = (64, 64)):
    """A run folder with random MobileNetV2 weights and split lists, as training leaves one:
    for what does not depend on the weights' values (export mechanics, serving)."""
    from training.config import TrainConfig
    from training.data import voc
    from training.learning.run_folder import RunFolder

    config = TrainConfig(
        data=str(data),
        out=str(path),
        input_size=input_size,
        backbone="mobilenetv2",
        backbone_weights=None,
    )
    run = RunFolder(path)
    run.write_config(config)
    voc.write_split_lists(data, run.splits, ("train", "val"))
    run.build_model().save_weights(run.best_weights)
    return run


def copy_version(source: Path, base_path: Path, version: int) -> Path:
    """Publishes a copy of ``source`` as ``base_path/version`` the way export does: staged
    under a non-integer name, then renamed."""
    staging = base_path / f".copy-{version}"
    shutil.copytree(source, staging)
    target = base_path / str(version)
    staging.rename(target)
    return target


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """``(key, cert)`` PEM files of a certificate for localhost and 127.0.0.1, made by openssl;
    the test is skipped, saying why, where openssl cannot make one."""
    import pytest

    key, cert = folder / "key.pem", folder / "cert.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr.decode()[-200:]}")
    return key, cert


def call_signature(function, **inputs) -> dict:
    """A loaded SavedModel signature called as TF Serving calls it: optional inputs left out get
    the contract's defaults (Python's signature functions do not fill a SignatureDef's)."""
    from client import contract

    for name in function.structured_input_signature[1]:
        if name not in inputs and name in contract.INPUT_DEFAULTS:
            inputs[name] = contract.INPUT_DEFAULTS[name]
    return function(**inputs)
