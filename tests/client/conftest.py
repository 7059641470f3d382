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
