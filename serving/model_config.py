"""Which models to serve and which of their versions: TF Serving's model config file.

The file is TF Serving's own text-format ``ModelServerConfig`` (``models/models.config``),
parsed with the official protos, so one file drives TF Serving in Docker and this server.

    sources = read_model_config("models/models.config")
    sources[0].name, sources[0].base_path
    # → ('deeplabv3', PosixPath('models/deeplabv3'))
    select_versions(sources[0], [1, 2, 3])  # version policy "latest" (1)
    # → [3]

TF Serving requires absolute base paths; ``/models/deeplabv3`` is where Dockerfile.serve puts
the repository. Outside the container such a path usually does not exist, so a missing
absolute base path is replaced by its last component beside the config file: the same
``models/`` folder, read in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServingError
from serving.polling import Poller

log = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """The model config names something this server cannot serve; the message says what."""


@dataclass(frozen=True)
class ModelSource:
    """One configured model: where its versions live and which of them to serve."""

    name: str
    base_path: Path
    policy: str = "latest"  # "latest", "all" or "specific"
    latest_count: int = 1
    specific: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)


def single_model(name: str, base_path: str | Path) -> ModelSource:
    """``--model-name NAME --model-base-path PATH``: the newest version of one model."""
    return ModelSource(name=name, base_path=Path(base_path))


def _resolve(base_path: str, config_dir: Path) -> Path:
    path = Path(base_path)
    if not path.is_absolute():
        return config_dir / path
    if path.exists():
        return path
    beside = config_dir / path.name
    log.info("base path %s does not exist here; serving %s (beside the config)", path, beside)
    return beside


def _source(
    config: model_server_config_pb2.ModelConfig, config_dir: Path, origin: str
) -> ModelSource:
    if config.model_platform and config.model_platform != "tensorflow":
        raise ModelConfigError(
            f"{origin}: model {config.name!r}: platform {config.model_platform!r} is not "
            "served here (expected 'tensorflow')"
        )
    if not config.name or not config.base_path:
        raise ModelConfigError(f"{origin}: a model config needs a name and a base_path: {config}")
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    return ModelSource(
        name=config.name,
        base_path=_resolve(config.base_path, config_dir),
        policy=kind,
        latest_count=max(policy.latest.num_versions, 1) if kind == "latest" else 1,
        specific=tuple(sorted(policy.specific.versions)) if kind == "specific" else (),
        labels=dict(config.version_labels),
    )


def model_sources(
    config: model_server_config_pb2.ModelServerConfig, config_dir: Path, origin: str
) -> list[ModelSource]:
    """Every model of a ``ModelServerConfig`` (``model_config_list`` only): the file's, or a
    ``HandleReloadConfigRequest``'s. Relative base paths are read from ``config_dir``; each
    error message starts with ``origin`` (the file, or the request).

        model_sources(request.config, Path("models"), "ReloadConfigRequest")
    """
    if config.WhichOneof("config") != "model_config_list":
        raise ModelConfigError(f"{origin}: expected a model_config_list")
    sources = [_source(model, config_dir, origin) for model in config.model_config_list.config]
    names = [s.name for s in sources]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ModelConfigError(f"{origin}: a model name appears twice: {', '.join(twice)}")
    return sources


def parse_model_config(text: str, path: str | Path) -> list[ModelSource]:
    """``read_model_config`` of text already read from ``path`` (the file watcher compares
    texts, so it reads the file itself)."""
    path = Path(path)
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ModelConfigError(f"{path}: not a ModelServerConfig text proto ({error})") from error
    return model_sources(config, path.parent, str(path))


def read_model_config(path: str | Path) -> list[ModelSource]:
    """Every model of a ``ModelServerConfig`` text file (``model_config_list`` only)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelConfigError(f"{path}: cannot read the model config ({error})") from error
    return parse_model_config(text, path)


def select_versions(source: ModelSource, available: list[int]) -> list[int]:
    """The versions ``source``'s policy serves out of ``available`` (ascending)."""
    available = sorted(available)
    if source.policy == "all":
        return available
    if source.policy == "specific":
        return [v for v in available if v in source.specific]
    return available[-source.latest_count :]


class ConfigFileWatcher:
    """Re-reads a model config file every ``poll_seconds`` and hands a changed one to ``apply``
    (TF Serving's ``--model_config_file_poll_wait_seconds``). A file that cannot be read or
    parsed, or that ``apply`` refuses (ModelConfigError, ServingError), changes nothing: the
    error is logged once, naming the file, the last good config keeps serving, and the file
    is tried again once its text changes. The first check applies the file as it is then
    (a no-op when it is what the server started with, and no edit made while the models
    loaded is lost).

        watcher = ConfigFileWatcher("models/models.config", manager.reconfigure, 2.0)
        watcher.start()
        watcher.stop()
    """

    def __init__(
        self, path: str | Path, apply: Callable[[list[ModelSource]], object], poll_seconds: float
    ):
        self.path = Path(path)
        self.apply = apply
        self.poll_seconds = poll_seconds
        self._seen: str | None = None  # the text last applied or refused (tried once)
        self._logged = ""  # the last error logged: a file that stays unreadable is not news
        self._poller = Poller(self.check, poll_seconds, "config-poller")

    def start(self) -> None:
        self._poller.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling (a reload in progress finishes in the background)."""
        self._poller.stop(timeout)

    def check(self) -> None:
        """One look at the file: applies it if its text changed since the last look."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self._refuse(f"{self.path}: cannot read the model config ({error})")
            return  # logged once while it stays unreadable
        self._logged = ""
        if text == self._seen:
            return
        self._seen = text
        try:
            self.apply(parse_model_config(text, self.path))
        except ModelConfigError as error:
            self._refuse(str(error))
            return
        except ServingError as error:
            self._refuse(f"{self.path}: {error.message}")
            return
        log.info("%s: applied", self.path)

    def _refuse(self, why: str) -> None:
        if why != self._logged:
            log.error("%s; not applied, the last good config keeps serving", why)
            self._logged = why
