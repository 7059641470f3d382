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
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

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


def _source(config: model_server_config_pb2.ModelConfig, config_dir: Path) -> ModelSource:
    if config.model_platform and config.model_platform != "tensorflow":
        raise ModelConfigError(
            f"model {config.name!r}: platform {config.model_platform!r} is not served here "
            "(expected 'tensorflow')"
        )
    if not config.name or not config.base_path:
        raise ModelConfigError(f"a model config needs a name and a base_path: {config}")
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


def read_model_config(path: str | Path) -> list[ModelSource]:
    """Every model of a ``ModelServerConfig`` text file (``model_config_list`` only)."""
    path = Path(path)
    try:
        config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except OSError as error:
        raise ModelConfigError(f"{path}: cannot read the model config ({error})") from error
    except text_format.ParseError as error:
        raise ModelConfigError(f"{path}: not a ModelServerConfig text proto ({error})") from error
    if config.WhichOneof("config") != "model_config_list":
        raise ModelConfigError(f"{path}: expected a model_config_list")
    sources = [_source(model, path.parent) for model in config.model_config_list.config]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ModelConfigError(f"{path}: a model name appears twice: {names}")
    return sources


def select_versions(source: ModelSource, available: list[int]) -> list[int]:
    """The versions ``source``'s policy serves out of ``available`` (ascending)."""
    available = sorted(available)
    if source.policy == "all":
        return available
    if source.policy == "specific":
        return [v for v in available if v in source.specific]
    return available[-source.latest_count :]
