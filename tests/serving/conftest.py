"""A real exported model and a real embedded server on 127.0.0.1 for the serving tests."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from serving.model_config import single_model
from serving.options import Limits, ServerOptions
from serving.server import EmbeddedServer
from tests.helpers import copy_version

LIMITS = Limits(max_batch=4, max_pixels=1_500_000)


@pytest.fixture
def base_path(exported_version, tmp_path) -> Path:
    """A private model folder holding version 1 (tests may add versions to it)."""
    path = tmp_path / "deeplabv3"
    path.mkdir()
    copy_version(exported_version, path, 1)
    return path


@pytest.fixture
def server(base_path):
    server = EmbeddedServer(
        [single_model("deeplabv3", base_path)],
        ServerOptions(host="127.0.0.1", port=0, metrics_port=0, poll_seconds=0.2, limits=LIMITS),
    )
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    ) as channel:
        yield channel
