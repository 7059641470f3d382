"""Changing the model list while serving: models.config polled, HandleReloadConfigRequest.

The manager's rules are tested with stand-in versions (no TensorFlow load, fast); then a real
server on 127.0.0.1 is reconfigured by rewriting its config file, and through the official
ModelService stub.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.errors import ServingError
from serving.manager import ModelManager
from serving.model_config import (
    ConfigFileWatcher,
    ModelSource,
    parse_model_config,
    read_model_config,
)
from serving.options import ServerOptions
from serving.polling import Poller
from serving.servable import LoadedVersion
from serving.server import EmbeddedServer
from tests.helpers import copy_version

SERVING = health_pb2.HealthCheckResponse.SERVING


def _config(**models: str) -> str:
    """A models.config text: ``name="base_path: '…' …"`` for each model."""
    entries = "".join(f'  config {{ name: "{name}" {body} }}\n' for name, body in models.items())
    return "model_config_list {\n" + entries + "}\n"


def _write(path: Path, text: str) -> None:
    """Replaces the file in one step, as a Kubernetes ConfigMap update or an editor does."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(text)
    staging.replace(path)


def _until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


# --- the manager's rules, with stand-in versions -----------------------------------------------


@pytest.fixture
def fake_loads(monkeypatch) -> list[tuple[str, int, Path]]:
    """Replaces loading a SavedModel with a stand-in version; a folder holding a file named
    ``broken`` fails to load. Returns every load, in order."""
    loads = []

    def load(name: str, version: int, path: Path) -> LoadedVersion:
        loads.append((name, version, path))
        if (path / "broken").exists():
            raise ValueError(f"{path} is broken")
        return LoadedVersion(name, version, path, {}, {}, load_seconds=0.0)

    monkeypatch.setattr("serving.manager.load_version", load)
    return loads


def _versions(tmp_path: Path, folder: str, *versions: int, broken: bool = False) -> Path:
    base = tmp_path / folder
    for version in versions:
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / ("broken" if broken else "saved_model.pb")).write_text("x")
    return base


def _serving(manager: ModelManager) -> dict[str, list[int]]:
    return {name: sorted(model.serving) for name, model in manager.models.items()}


def test_models_are_added_removed_and_changed_in_place(tmp_path, fake_loads):
    a, b = _versions(tmp_path, "a", 1, 2), _versions(tmp_path, "b", 1)
    model_changes = []
    labelled = ModelSource("a", a, labels={"stable": 2})
    manager = ModelManager(
        [labelled], on_models=lambda: model_changes.append(sorted(manager.models))
    )
    manager.sync()
    a_model = manager.models["a"]
    assert _serving(manager) == {"a": [2]}
    assert manager.reconfigure([labelled, ModelSource("b", b, policy="all")]) == {}
    assert _serving(manager) == {"a": [2], "b": [1]} and model_changes == [["a", "b"]]
    assert manager.models["a"] is a_model  # kept: its versions are not loaded again
    # b removed: NOT_FOUND at once, as any unknown model; a's policy latest → specific.
    both = dataclasses.replace(labelled, policy="specific", specific=(1, 2))
    assert manager.reconfigure([both]) == {}
    assert _serving(manager) == {"a": [1, 2]} and model_changes[-1] == ["a"]
    with pytest.raises(ServingError) as removed, manager.serving("b"):
        pass
    assert removed.value.code == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request: Latest(b)" in removed.value.message
    # The label moved to a version that serves switches at once; 2 leaves the policy.
    manager.reconfigure([dataclasses.replace(both, specific=(1,), labels={"stable": 1})])
    with manager.serving("a", label="stable") as version:
        assert version.version == 1
    assert _serving(manager) == {"a": [1]}
    assert len(fake_loads) == 3  # a/2 at start, b/1, a/1: nothing loaded twice


def test_moving_a_label_to_a_version_that_does_not_serve_refuses_the_whole_config(
    tmp_path, fake_loads
):
    a = _versions(tmp_path, "a", 1, 2)
    manager = ModelManager([ModelSource("a", a, policy="specific", specific=(1,), labels={"s": 1})])
    manager.sync()
    # One edit that both loads version 2 and moves the label to it: clients of "s" would get
    # NOT_FOUND while 2 loads (or for good, if it never does), so nothing of it is applied.
    moved = ModelSource("a", a, policy="specific", specific=(1, 2), labels={"s": 2})
    with pytest.raises(ServingError) as refused:
        manager.reconfigure([moved])
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        "Request to assign label to version 2 of model a, which is not currently available"
        in refused.value.message
    )
    assert _serving(manager) == {"a": [1]} and manager.models["a"].source.labels == {"s": 1}
    # The two steps TF Serving asks for: load the version, then move the label. A new label
    # may name any version (as at start): NOT_FOUND until it serves.
    manager.reconfigure([ModelSource("a", a, policy="specific", specific=(1, 2), labels={"s": 1})])
    manager.reconfigure([dataclasses.replace(moved, labels={"s": 2, "next": 3})])
    with manager.serving("a", label="s") as version:
        assert version.version == 2


def test_a_base_path_change_replaces_the_versions_once_the_new_ones_load(tmp_path, fake_loads):
    old, new = _versions(tmp_path, "old", 1, 2), _versions(tmp_path, "new", 2)
    manager = ModelManager([ModelSource("a", old)])
    manager.sync()
    manager.reconfigure([ModelSource("a", new)])
    assert {v: s.path for v, s in manager.models["a"].serving.items()} == {2: new / "2"}
    # A new path where nothing loads: the old path's versions keep serving.
    broken = _versions(tmp_path, "broken", 3, broken=True)
    manager.reconfigure([ModelSource("a", broken)])
    assert {v: s.path for v, s in manager.models["a"].serving.items()} == {2: new / "2"}
    assert manager.versions("a", 3)[0].state == "END"


def test_health_counts_a_model_added_while_serving_once_it_has_served(tmp_path, fake_loads):
    a = _versions(tmp_path, "a", 1)
    broken, empty = _versions(tmp_path, "c", 1, broken=True), tmp_path / "nothing"
    manager = ModelManager([ModelSource("a", a), ModelSource("c", broken)])
    manager.sync()
    assert manager.unavailable() == ["c"]  # configured at start: NOT_SERVING
    missing = manager.reconfigure([ModelSource("a", a), ModelSource("d", empty)])
    assert list(missing) == ["d"] and "no version found under" in missing["d"]
    assert manager.unavailable() == []  # c removed; d not counted until it has served
    _versions(tmp_path, "nothing", 1)
    manager.sync()  # the version poller finds it
    assert manager.unavailable() == [] and _serving(manager)["d"] == [1]
    shutil.rmtree(empty / "1")
    manager.sync()  # from now on d counts, as a model configured at start does
    assert manager.unavailable() == ["d"]


def test_the_watcher_applies_a_changed_file_and_keeps_the_last_good_one(tmp_path, caplog):
    path = tmp_path / "models.config"
    applied: list[list[str]] = []

    def apply(sources: list[ModelSource]) -> None:
        if any(s.name == "refused" for s in sources):
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, "labels say no")
        applied.append([s.name for s in sources])

    watcher = ConfigFileWatcher(path, apply, poll_seconds=60)
    caplog.set_level(logging.INFO, logger="serving.model_config")
    path.write_text(_config(a='base_path: "a"'))
    watcher.check()
    watcher.check()  # unchanged: not applied again
    assert applied == [["a"]]
    for text, why in [
        ("model_config_list { config { name: ", "not a ModelServerConfig text proto"),
        (_config(a='base_path: "a" model_platform: "tflite"'), "platform 'tflite'"),
        (_config(refused='base_path: "r"'), "labels say no"),
        (b"\xff\xfe broken bytes", "cannot read"),
    ]:
        caplog.clear()
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        watcher.check()
        watcher.check()
        (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert str(path) in error and why in error and "last good config keeps serving" in error
    path.unlink()
    watcher.check()
    path.write_text(_config(a='base_path: "a"', b='base_path: "b"'))
    watcher.check()
    assert applied == [["a"], ["a", "b"]]


def test_a_call_that_fails_does_not_end_polling(caplog):
    calls, second = [], threading.Event()

    def call() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the disk went away")
        second.set()

    poller = Poller(call, 0.01, "test-poller")
    poller.start()
    try:
        assert second.wait(30)
    finally:
        poller.stop()
    assert "test-poller: a call failed" in caplog.text and "the disk went away" in caplog.text


def test_config_text_is_parsed_as_the_file_is_read():
    config = parse_model_config(_config(a='base_path: "/nowhere/a"'), Path("/srv/models.config"))
    assert config == [ModelSource("a", Path("/srv/a"))]  # a missing absolute path: beside


# --- a real server --------------------------------------------------------------------------


def _predict(channel, name: str, **spec) -> int:
    """The version that answers a ``metadata`` Predict for ``name`` (no inputs needed)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "metadata"
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(request, timeout=30).model_spec.version.value


def _code(channel, name: str) -> grpc.StatusCode:
    try:
        _predict(channel, name)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status


@pytest.fixture
def two_versions(exported_version, tmp_path) -> Path:
    base = tmp_path / "deeplabv3"
    base.mkdir()
    copy_version(exported_version, base, 1)
    copy_version(exported_version, base, 2)
    return base


def _start(path: Path, **options) -> tuple[EmbeddedServer, grpc.Channel]:
    options = ServerOptions(host="127.0.0.1", port=0, poll_seconds=0.2, **options)
    server = EmbeddedServer(read_model_config(path), options, config_path=path)
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{server.port}")


def test_editing_models_config_while_serving(two_versions, tmp_path, caplog):
    base = f'base_path: "{two_versions}"'
    path = tmp_path / "models.config"
    latest_two = "model_version_policy { latest { num_versions: 2 } }"
    _write(path, _config(a=f'{base} {latest_two} version_labels {{ key: "stable" value: 1 }}'))
    server, channel = _start(path, model_config_poll_seconds=0.1)
    try:
        assert _predict(channel, "a") == 2 and _predict(channel, "a", label="stable") == 1
        assert _code(channel, "b") == grpc.StatusCode.NOT_FOUND
        # A model added, and a label moved (to a version that serves).
        only_1 = "model_version_policy { specific { versions: 1 } }"
        _write(
            path,
            _config(
                a=f'{base} {latest_two} version_labels {{ key: "stable" value: 2 }}',
                b=f"{base} {only_1}",
            ),
        )
        _until(lambda: _code(channel, "b") == grpc.StatusCode.OK, what="b answering")
        assert _predict(channel, "b") == 1 and _predict(channel, "a", label="stable") == 2
        # A broken file changes nothing, and says why.
        caplog.set_level(logging.ERROR, logger="serving.model_config")
        _write(path, _config(a=f"{base} model_version_policy {{ latest {{ wrong: 1 }} }}"))
        _until(lambda: '"wrong"' in caplog.text, what="the error logged")
        assert f"{path}: not a ModelServerConfig text proto" in caplog.text
        assert _predict(channel, "b") == 1 and _predict(channel, "a", label="stable") == 2
        # Fixed: b removed, a's policy latest → specific, its label back to 1.
        _write(path, _config(a=f'{base} {only_1} version_labels {{ key: "stable" value: 1 }}'))
        _until(lambda: _code(channel, "b") == grpc.StatusCode.NOT_FOUND, what="b removed")
        assert _predict(channel, "a") == 1 and _predict(channel, "a", label="stable") == 1
        states = lambda: {s.version: s.state for s in server.manager.versions("a")}  # noqa: E731
        _until(lambda: states() == {1: "AVAILABLE", 2: "END"}, what="a/2 unloaded")
        assert _health(channel) == SERVING
    finally:
        server.stop(grace=0.5)


def _reload(stub, text: str) -> model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    if text:
        text_format.Parse(text, request.config)
    return stub.HandleReloadConfigRequest(request, timeout=120)


def test_handle_reload_config_request(two_versions, tmp_path):
    path = tmp_path / "models.config"
    only_1 = "model_version_policy { specific { versions: 1 } }"
    relative = 'base_path: "deeplabv3"'  # beside the config file, as the file's own paths
    path.write_text(_config(a=f"{relative} {only_1}"))
    server, channel = _start(path, model_config_poll_seconds=0)  # the file is read once
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    labelled = f'{relative} {only_1} version_labels {{ key: "stable" value: 1 }}'
    try:
        # Answered once the model added has loaded: it answers at once.
        response = _reload(stub, _config(a=labelled, b=relative))
        assert response.HasField("status") and response.status.error_code == 0
        assert _predict(channel, "b") == 2 and _predict(channel, "a", label="stable") == 1
        errors = [
            (
                "model_config_list { config { name: 'a' base_path: 'x' } "
                "config { name: 'a' base_path: 'y' } }",
                grpc.StatusCode.INVALID_ARGUMENT,
                "ReloadConfigRequest: a model name appears twice: a",
            ),
            (
                _config(a=f'{relative} model_platform: "tflite"'),
                grpc.StatusCode.INVALID_ARGUMENT,
                "platform 'tflite' is not served here",
            ),
            (
                "custom_model_config { }",
                grpc.StatusCode.INVALID_ARGUMENT,
                "Only ModelConfigList is currently supported",
            ),
            # An empty config too: TF Serving's model_service_impl.cc has no case for it.
            ("", grpc.StatusCode.INVALID_ARGUMENT, "Only ModelConfigList is currently supported"),
            (
                _config(a=labelled.replace("value: 1", "value: 2"), b=relative),
                grpc.StatusCode.FAILED_PRECONDITION,
                "Request to assign label to version 2 of model a, which is not currently "
                "available for inference",
            ),
        ]
        for text, code, message in errors:
            with pytest.raises(grpc.RpcError) as refused:
                _reload(stub, text)
            assert refused.value.code() == code and message in refused.value.details()
            # Nothing changed.
            assert _predict(channel, "b") == 2 and _predict(channel, "a", label="stable") == 1
        # A model that does not load: UNKNOWN naming it, the rest applied, health unchanged.
        (tmp_path / "empty").mkdir()
        with pytest.raises(grpc.RpcError) as unknown:
            _reload(stub, _config(a=labelled, c='base_path: "empty"'))
        assert unknown.value.code() == grpc.StatusCode.UNKNOWN
        assert "1 model(s) did not become available: {c: no version found under" in (
            unknown.value.details()
        )
        assert _code(channel, "b") == grpc.StatusCode.NOT_FOUND and _predict(channel, "a") == 1
        assert _health(channel) == SERVING
    finally:
        server.stop(grace=0.5)
