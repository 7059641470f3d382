"""A real embedded server on 127.0.0.1 serving a real exported model, for the client tests."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import copy_version

# A 1080p raw frame must get through (the client's promise); the server's defaults allow it.
MAX_PIXELS = 1920 * 1080


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def client_models(exported_version, tmp_path_factory) -> Path:
    """A model folder with version 1, read-only for the client tests."""
    path = tmp_path_factory.mktemp("client-models") / "deeplabv3"
    path.mkdir()
    copy_version(exported_version, path, 1)
    return path


@pytest.fixture(scope="session")
def start_server(client_models) -> Callable:
    """``start_server(port=0, **options)`` → a started EmbeddedServer; stopped at session end."""
    from serving.inputs import Limits
    from serving.model_config import single_model
    from serving.server import EmbeddedServer, ServerOptions

    started = []

    def start(port: int = 0, **options) -> EmbeddedServer:
        options.setdefault("limits", Limits(max_batch=4, max_pixels=MAX_PIXELS))
        server = EmbeddedServer(
            [single_model("deeplabv3", client_models)],
            ServerOptions(host="127.0.0.1", port=port, poll_seconds=60, **options),
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0.5)


@pytest.fixture(scope="session")
def server(start_server):
    """One server shared by the tests that do not stop it."""
    return start_server()


@pytest.fixture(scope="session")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def saved_model(client_models):
    """The exported SavedModel itself, loaded in-process: the reference for class maps."""
    import tensorflow as tf

    return tf.saved_model.load(str(client_models / "1"))
