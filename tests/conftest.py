"""Shared fixtures: the real VOC sample from ../shared, small synthetic VOC roots, an exported
model."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import copy_version

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
VOC_SAMPLE = Path(os.environ.get("VOC_SAMPLE_DIR", REPO.parent / "shared" / "data" / "voc_sample"))


# Fixtures that train, export or start servers: every test that uses one (directly or through
# another fixture) is marked `slow`, so `make test-fast` (pytest -m "not slow") leaves it out.
# Tests that train or export by themselves carry the mark in their own module.
SLOW_FIXTURES = frozenset(
    {
        "trained_run",
        "exported_version",
        "served_models",
        "start_server",
        "server",
        "small_run",
        "tiny_run",
        "resume_root",
        "model_server",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def voc_sample() -> Path:
    """The nine real VOC 2012 pairs with split lists (read-only)."""
    if not (VOC_SAMPLE / "SegmentationClass").is_dir():
        pytest.skip(
            f"real VOC sample not found at {VOC_SAMPLE} (set VOC_SAMPLE_DIR to a folder with "
            "the shared voc_sample to run this test)"
        )
    return VOC_SAMPLE


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic VOC root shared by read-only tests (12 train, 4 val, 160x120)."""
    from training.data.synth import write_synthetic_voc

    return write_synthetic_voc(
        tmp_path_factory.mktemp("synth") / "voc",
        count=16,
        seed=3,
        size=(160, 120),
        val_fraction=0.25,
    )


@pytest.fixture(scope="session")
def trained_run(synth_root, tmp_path_factory):
    """A run folder after a few steps of training (~20 s), read-only for its users.

    Randomly initialized DeepLab v3 has logits of ~1e-12 (they vanish through the untrained
    batch norms): float16 flushes them to zero, and its answers do not depend on the frame, so
    no comparison with it could fail. A little training gives logits of a realistic scale and
    class maps with structure."""
    from training.learning.train import train
    from training.presets import train_config

    config = train_config(
        "smoke", data=str(synth_root), out=str(tmp_path_factory.mktemp("runs") / "small")
    )
    return train(config, verbose=0).run


@pytest.fixture(scope="session")
def exported_version(trained_run, tmp_path_factory) -> Path:
    """``…/deeplabv3/1``: ``trained_run`` exported by the real exporter, shared by the serving
    and client tests."""
    from training.export.publish import export_run

    models = tmp_path_factory.mktemp("serving-models")
    return export_run(trained_run.path, models, warmup_sizes=((48, 64),)).path


# A 1080p raw frame must get through (the client's promise); the server's defaults allow it.
MAX_PIXELS = 1920 * 1080


@pytest.fixture(scope="session")
def served_models(exported_version, tmp_path_factory) -> Path:
    """A model folder with version 1, read-only for the client and gateway tests."""
    path = tmp_path_factory.mktemp("client-models") / "deeplabv3"
    path.mkdir()
    copy_version(exported_version, path, 1)
    return path


@pytest.fixture(scope="session")
def start_server(served_models) -> Callable:
    """``start_server(port=0, **options)`` → a started EmbeddedServer; stopped at session end."""
    from serving.model_config import single_model
    from serving.options import Limits, ServerOptions
    from serving.server import EmbeddedServer

    started = []

    def start(port: int = 0, **options) -> EmbeddedServer:
        options.setdefault("limits", Limits(max_batch=4, max_pixels=MAX_PIXELS))
        server = EmbeddedServer(
            [single_model("deeplabv3", served_models)],
            ServerOptions(host="127.0.0.1", port=port, poll_seconds=60, **options),
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0.5)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Index masks of read-only roots go to a per-session cache, not the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
