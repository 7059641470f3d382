"""Loads, swaps and unloads model versions as they appear on disk (TF Serving's lifecycle).

Each configured model's base path is scanned at start and then every ``poll_seconds``. A new
version the policy wants is loaded and warmed up *beside* the serving ones (state LOADING),
then published by replacing the model's version table in one assignment, so requests never
see a half-ready version. A version the policy no longer wants leaves the table first
(UNLOADING) and is dropped once its in-flight requests have finished (END). A version that
fails to load or to warm up is reported (END with the error, in GetModelStatus and the logs),
retried only when its folder changes, and left out of the policy meanwhile: the newest
version that loads serves instead (at start as on reload), and one already serving keeps
serving (a version leaves only once a wanted one serves).

The model list itself can change while serving (``reconfigure``: a changed models.config, a
HandleReloadConfigRequest), as with TF Serving's ReloadConfig: models added are loaded beside
the others, models removed leave the list at once (NOT_FOUND from then on) and are unloaded
once their requests finish, a kept model's versions follow its new policy and base path, and
its labels switch at once.

    manager = ModelManager(read_model_config("models/models.config"), poll_seconds=2)
    manager.start()
    with manager.serving("deeplabv3") as version:  # the newest available version
        version.signatures["serving_default"](images=frames, output_size=[[0, 0]])
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from client.contract import version_folders
from serving.errors import ServingError, echo
from serving.model_config import ModelSource, select_versions
from serving.polling import Poller
from serving.servable import LoadedVersion, load_version

log = logging.getLogger(__name__)

# GetModelStatus states (tensorflow_serving.apis.get_model_status_pb2.ModelVersionStatus).
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class VersionStatus:
    version: int
    state: str
    error: str = ""  # why it ended, when it failed


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Changes when any file of a version folder changes (to retry a failed load once a slow
    copy has finished); None if the folder vanished while being read."""
    try:
        stats = [f.stat() for f in path.rglob("*") if f.is_file()]
    except OSError:
        return None
    return len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


class _Model:
    """The state of one configured model; ``serving`` and ``source`` are replaced, never
    mutated."""

    def __init__(self, source: ModelSource, counted: bool = True):
        self.source = source
        self.serving: dict[int, LoadedVersion] = {}
        self.status: dict[int, VersionStatus] = {}
        self.failed: dict[int, tuple[int, int, int]] = {}  # version → stamp that failed
        self.warned_empty = False
        # Counted by health. A model added while serving counts from its first AVAILABLE
        # version: adding a model to every replica's config must not take them all out of
        # their Service while it loads (or for good, if it never loads).
        self.counted = counted

    def current(self) -> set[int]:
        """The versions serving from the model's base path (after a base path change, the
        others are the former path's: replaced by the new path's, or unloaded)."""
        base_path = self.source.base_path
        return {v for v, loaded in self.serving.items() if loaded.path.parent == base_path}


class ModelManager:
    def __init__(
        self,
        sources: list[ModelSource],
        *,
        poll_seconds: float = 2.0,
        warm_up: Callable[[LoadedVersion], int] | None = None,
        unload_timeout: float = 60.0,
        on_change: Callable[[str, int, str, float | None], None] | None = None,
        on_models: Callable[[], None] | None = None,
    ):
        """``warm_up(version)`` replays the version's warmup records (returns how many);
        ``on_change(model, version, state, load_seconds)`` reports state changes (metrics);
        ``on_models()`` reports a change of the model list (health)."""
        # Replaced, never mutated: a request sees the list before a reconfigure or after it.
        self.models = {source.name: _Model(source) for source in sources}
        self.poll_seconds = poll_seconds
        self.warm_up = warm_up
        self.unload_timeout = unload_timeout
        self.on_change = on_change or (lambda *args: None)
        self.on_models = on_models or (lambda: None)
        self._sync_lock = threading.Lock()  # one scan or reconfigure at a time
        # A version's state, set by scans and by unload threads: an unload that ends must not
        # overwrite the state of the same version loaded again meanwhile.
        self._state_lock = threading.RLock()
        self._poller = Poller(self.sync, poll_seconds, "model-poller")

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Loads what is on disk now, then keeps polling in a background thread."""
        self.sync()
        self._poller.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling (a load in progress finishes in the background)."""
        self._poller.stop(timeout)

    def sync(self) -> None:
        """One scan of every model's base path: load what is new, unload what is not wanted."""
        with self._sync_lock:
            for model in self.models.values():
                self._sync_model(model)

    def reconfigure(self, sources: list[ModelSource]) -> dict[str, str]:
        """Serves ``sources`` from now on, loading what they add before returning (TF
        Serving's ReloadConfig). Returns the models added that have no version AVAILABLE, each
        with why (ReloadConfig reports those; they stay configured, and a version copied in
        later is loaded). Moving a label refuses the whole config (FAILED_PRECONDITION,
        nothing changed) unless its new version is AVAILABLE: clients of a moved label must
        not get NOT_FOUND (TF Serving with ``--allow_version_labels_for_unavailable_models``,
        whose other half, a new label may name any version, is this server's rule at start).

            manager.reconfigure(read_model_config("models/models.config"))  # → {} when all load
        """
        with self._sync_lock:
            before = self.models
            for source in sources:
                if source.name in before:
                    _check_labels(before[source.name], source)
            after = {s.name: _kept_or_added(before.get(s.name), s) for s in sources}
            self.models = after  # one assignment: the new list, removed models NOT_FOUND
            for name, model in before.items():
                if name not in after:
                    log.info("model %s removed", name)
                    for version in sorted(model.serving):
                        self._unload(model, version)
            if after.keys() != before.keys():
                self.on_models()
            for model in after.values():
                self._sync_model(model)
            # Under the lock: a scan adding a version's state meanwhile would break the loop.
            missing = {
                name: _why_unavailable(model)
                for name, model in after.items()
                if name not in before and not model.serving
            }
        for name, why in missing.items():
            log.warning("model %s added, but no version of it is available: %s", name, why)
        return missing

    def _set(self, model: _Model, version: int, state: str, error: str = "", seconds=None):
        with self._state_lock:
            model.status[version] = VersionStatus(version, state, error)
            self.on_change(model.source.name, version, state, seconds)

    def _sync_model(self, model: _Model) -> None:
        folders = version_folders(model.source.base_path)
        if not folders and not model.warned_empty:  # once, not every scan
            log.warning(
                "no versions of %s found under %s", model.source.name, model.source.base_path
            )
        model.warned_empty = not folders
        # A version that failed is left out until its folder changes, so the policy falls
        # back to the newest version that loads (at start too: a broken newest export must
        # not leave the server answering nothing).
        candidates = set(folders)
        for version, failed_stamp in model.failed.items():
            if version in folders and _stamp(folders[version]) in (None, failed_stamp):
                candidates.discard(version)  # unchanged since it failed (or vanishing)
        while True:  # ends: each round loads what it wants, or drops what failed
            wanted = set(select_versions(model.source, sorted(candidates)))
            failed = set()
            for version in sorted(wanted - model.current(), reverse=True):  # newest first
                if not self._load(model, version, folders[version]):
                    failed.add(version)
            if not failed:
                break
            candidates -= failed
        # Availability first (TF Serving's policy): a version leaves only once a wanted one
        # serves, so a new version that fails to load leaves the old one serving (and a new
        # base path where nothing loads, the former path's versions).
        kept = wanted & model.current()
        if kept or not (wanted or set(model.serving) - model.current()):
            for version in sorted(set(model.serving) - kept):
                self._unload(model, version)

    def _load(self, model: _Model, version: int, path: Path) -> bool:
        """Loads and warms up ``version``; False (the failure recorded) if it does not load."""
        name = model.source.name
        stamp = _stamp(path)
        self._set(model, version, LOADING)
        log.info("loading %s version %d from %s", name, version, path)
        try:
            loaded = load_version(name, version, path)
            records = self.warm_up(loaded) if self.warm_up else 0
        except Exception as error:  # any failure: report it, keep serving the others
            message = f"{type(error).__name__}: {error}".strip()
            log.error("%s version %d failed to load: %s", name, version, message)
            if stamp is not None:
                model.failed[version] = stamp
            self._set(model, version, END, message)
            return False
        model.failed.pop(version, None)
        # One assignment: atomic swap (replacing a version of a former base path, whose
        # requests in flight finish on it).
        model.serving = {**model.serving, version: loaded}
        model.counted = True
        self._set(model, version, AVAILABLE, seconds=loaded.load_seconds)
        log.info(
            "%s version %d available (loaded in %.1f s, %d warmup records)",
            name,
            version,
            loaded.load_seconds,
            records,
        )
        return True

    def _unload(self, model: _Model, version: int) -> None:
        leaving = model.serving[version]
        model.serving = {v: s for v, s in model.serving.items() if v != version}
        self._set(model, version, UNLOADING)
        unloading = model.status[version]

        def finish() -> None:
            if not leaving.wait_idle(self.unload_timeout):
                log.warning(
                    "%s version %d: %d requests still running after %.0f s; unloading anyway",
                    model.source.name,
                    version,
                    leaving.active,
                    self.unload_timeout,
                )
            with self._state_lock:
                if model.status.get(version) is unloading:  # not loaded again meanwhile
                    self._set(model, version, END)
            log.info("%s version %d unloaded", model.source.name, version)

        threading.Thread(target=finish, name=f"unload-{version}", daemon=True).start()

    def unavailable(self) -> list[str]:
        """The configured models with no version serving (health says NOT_SERVING then),
        leaving out models added while serving that have not had one yet."""
        models = self.models.items()
        return [name for name, model in models if model.counted and not model.serving]

    # --- requests --------------------------------------------------------------------------

    def _model(self, name: str, request: str) -> _Model:
        model = self.models.get(name)
        if model is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
            )
        return model

    @contextlib.contextmanager
    def serving(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[LoadedVersion]:
        """The requested version (newest when neither ``version`` nor ``label`` is given),
        counted as in flight until the block ends. NOT_FOUND as TF Serving words it."""
        if label:
            labels = self._model(name, f"Latest({echo(name)})").source.labels  # one read
            if label not in labels:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {echo(label)}",
                )
            version = labels[label]
        shown = echo(name)
        request = f"Latest({shown})" if version is None else f"Specific({shown}, {version})"
        model = self._model(name, request)
        table = model.serving  # one read: a swap during the request does not affect it
        chosen = table.get(max(table) if version is None and table else version)
        if chosen is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
            )
        with chosen.in_flight():
            yield chosen

    def versions(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Status of every version the model has had (or of one), for GetModelStatus."""
        model = self._model(name, f"Latest({echo(name)})")
        statuses = sorted(model.status.values(), key=lambda s: s.version)
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {version} of model {echo(name)}",
                )
        if not statuses:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {echo(name)}",
            )
        return statuses

    def known_names(self, name: str, signature: str) -> tuple[str, str]:
        """``(name, signature)`` with any that is not served replaced by ``"(unknown)"``."""
        model = self.models.get(name)
        if model is None:
            return "(unknown)", "(unknown)" if signature else ""
        served = any(signature in v.signature_defs for v in model.serving.values())
        return name, signature if served or not signature else "(unknown)"


def _kept_or_added(model: _Model | None, source: ModelSource) -> _Model:
    """``model`` (None: a model added) serving ``source`` from now on: a kept model keeps its
    versions, which ``_sync_model`` then fits to the new policy and base path."""
    if model is None:
        log.info("model %s added (base path %s)", source.name, source.base_path)
        return _Model(source, counted=False)
    if model.source != source:
        log.info("model %s changed: %s", source.name, source)
        if model.source.base_path != source.base_path:
            model.failed, model.warned_empty = {}, False  # another folder's
        model.source = source
    return model


def _check_labels(model: _Model, source: ModelSource) -> None:
    """FAILED_PRECONDITION, in TF Serving's words, if ``source`` moves one of ``model``'s
    labels to a version that is not AVAILABLE."""
    for label, version in sorted(source.labels.items()):
        if model.source.labels.get(label, version) != version and version not in model.serving:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Request to assign label to version {version} of model {echo(source.name)}, "
                f"which is not currently available for inference (label {echo(label)} is at "
                f"version {model.source.labels[label]}: let version {version} load first)",
            )


def _why_unavailable(model: _Model) -> str:
    """Why a model has no version serving: its versions' errors, or no version found."""
    errors = [f"version {s.version}: {s.error}" for s in model.status.values() if s.error]
    return "; ".join(errors) or f"no version found under {model.source.base_path}"
