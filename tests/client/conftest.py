"""One embedded server for the client tests that do not stop it (``start_server`` is in
tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def server(start_server):
    """One server shared by the tests that do not stop it."""
    return start_server()


@pytest.fixture(scope="session")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def saved_model(served_models):
    """The exported SavedModel itself, loaded in-process: the reference for class maps."""
    import tensorflow as tf

    return tf.saved_model.load(str(served_models / "1"))


def _export(command: str, run, out, *options: str) -> None:
    """``python -m training COMMAND --run RUN --out OUT [OPTIONS]``, the command's own code run
    in this process (TensorFlow is loaded here already); skips while it does not exist."""
    import argparse

    from training.cli import build_parser, main

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command not in commands.choices:
        pytest.skip(f"`python -m training {command}` does not exist yet (issue 18, export part)")
    argv = [command, "--run", str(run.path), "--out", str(out), *options]
    assert main(argv) == 0, f"python -m training {' '.join(argv)} failed"


@pytest.fixture(scope="session")
def tflite_model(trained_run, tmp_path_factory):
    """``trained_run`` exported by ``python -m training export-tflite``: the .tflite and its
    .json sidecar (read-only for the onboard and failover tests)."""
    out = tmp_path_factory.mktemp("onboard") / "deeplabv3.tflite"
    _export("export-tflite", trained_run, out)
    return out


@pytest.fixture(scope="session")
def onnx_model(trained_run, tmp_path_factory):
    """``trained_run`` exported by ``python -m training export-onnx`` and its sidecar."""
    out = tmp_path_factory.mktemp("onboard-onnx") / "deeplabv3.onnx"
    _export("export-onnx", trained_run, out)
    return out


@pytest.fixture(scope="session")
def int8_model(trained_run, tmp_path_factory):
    """``trained_run`` exported by ``export-tflite --optimize int8`` (fixed network size, the
    runner resizes) and its sidecar."""
    from training.config import TFLITE_OPTIMIZATIONS

    if "int8" not in TFLITE_OPTIMIZATIONS:
        pytest.skip("`export-tflite --optimize int8` does not exist yet (issue 18, export part)")
    out = tmp_path_factory.mktemp("onboard-int8") / "deeplabv3-int8.tflite"
    _export("export-tflite", trained_run, out, "--optimize", "int8")
    return out
