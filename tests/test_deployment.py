"""The deployment files: TF Serving's configs in models/, Dockerfile.serve and Dockerfile.train.

No Docker engine and no TF Serving binary exist here, so these tests check what can be checked
without them: the configs parse into TF Serving's own messages with the values that matter,
every flag given to ``tensorflow_model_server`` exists in its source, every file a flag or a
COPY names is in the repository, images are pinned, ports and health check match the contract.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
SERVE = REPO / "Dockerfile.serve"
TRAIN = REPO / "Dockerfile.train"
EMBEDDED = REPO / "Dockerfile.embedded"

# Every flag of tensorflow_model_server, copied from the `flag_list` in
# tensorflow_serving/model_servers/main.cc (github.com/tensorflow/serving, the 2.x file whose
# flags fill `Server::Options`). An unknown flag is not an error there: TF's flag parser passes
# it through and main() only prints "unknown argument", so a typo would silently do nothing.
SERVER_FLAGS = frozenset(
    {
        "port",
        "grpc_socket_path",
        "rest_api_port",
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "rest_api_enable_cors_support",
        "enable_batching",
        "allow_version_labels_for_unavailable_models",
        "batching_parameters_file",
        "enable_per_model_batching_parameters",
        "model_config_file",
        "model_config_file_poll_wait_seconds",
        "model_name",
        "model_base_path",
        "num_load_threads",
        "num_unload_threads",
        "max_num_load_retries",
        "load_retry_interval_micros",
        "file_system_poll_wait_seconds",
        "flush_filesystem_caches",
        "tensorflow_session_parallelism",
        "tensorflow_session_config_file",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "use_alts_credentials",
        "ssl_config_file",
        "platform_config_file",
        "per_process_gpu_memory_fraction",
        "saved_model_tags",
        "grpc_channel_arguments",
        "grpc_max_threads",
        "enable_model_warmup",
        "num_request_iterations_for_warmup",
        "version",
        "monitoring_config_file",
        "remove_unused_fields_from_bundle_metagraph",
        "prefer_tflite_model",
        "num_tflite_pools",
        "num_tflite_interpreters_per_pool",
        "enable_signature_method_name_check",
        "xla_cpu_compilation_enabled",
        "enable_profiler",
        "thread_pool_factory_config_file",
    }
)
# Flags at the end of the same list in main.cc as of early 2025 (the 2.19 line), after the
# ones above were written.
SERVER_FLAGS_2025 = frozenset(
    {
        "xla_gpu_compilation_enabled",
        "mixed_precision",
        "skip_initialize_tpu",
        "enable_grpc_healthcheck_service",
        "enable_serialization_as_tensor_content",
    }
)
KNOWN_SERVER_FLAGS = SERVER_FLAGS | SERVER_FLAGS_2025

# What TF Serving serves metrics on by default (PrometheusExporter::kPrometheusPath).
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


# --- TF Serving's config messages -------------------------------------------------------------


def _mirror_messages() -> dict[str, type[Message]]:
    """``BatchingParameters`` and ``MonitoringConfig``, field for field as in TF Serving's protos.

    The tensorflow-serving-api wheel ships model_server_config_pb2 but not these two, so they
    are rebuilt here from tensorflow_serving/servables/tensorflow/session_bundle_config.proto
    and tensorflow_serving/config/monitoring_config.proto (same names, numbers and types), in a
    private pool. Text format checks names and types, so a misspelt or mistyped field fails.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving_mirror.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        added = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.field[-1].type_name = type_name

    int64_value, string_value = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    message(
        "BatchingParameters",
        ("max_batch_size", 1, field.TYPE_MESSAGE, optional, int64_value),
        ("batch_timeout_micros", 2, field.TYPE_MESSAGE, optional, int64_value),
        ("max_enqueued_batches", 3, field.TYPE_MESSAGE, optional, int64_value),
        ("num_batch_threads", 4, field.TYPE_MESSAGE, optional, int64_value),
        ("thread_pool_name", 5, field.TYPE_MESSAGE, optional, string_value),
        ("allowed_batch_sizes", 6, field.TYPE_INT64, repeated, ""),
        ("pad_variable_length_inputs", 7, field.TYPE_BOOL, optional, ""),
    )
    message(
        "PrometheusConfig",
        ("enable", 1, field.TYPE_BOOL, optional, ""),
        ("path", 2, field.TYPE_STRING, optional, ""),
    )
    message(
        "MonitoringConfig",
        (
            "prometheus_config",
            1,
            field.TYPE_MESSAGE,
            optional,
            ".tensorflow.serving.PrometheusConfig",
        ),
    )
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("BatchingParameters", "MonitoringConfig")
    }


_MIRROR = _mirror_messages()
BatchingParameters = _MIRROR["BatchingParameters"]
MonitoringConfig = _MIRROR["MonitoringConfig"]

# The message each config flag's file must parse into.
CONFIG_MESSAGES: dict[str, type[Message]] = {
    "model_config_file": model_server_config_pb2.ModelServerConfig,
    "batching_parameters_file": BatchingParameters,
    "monitoring_config_file": MonitoringConfig,
}


def parse_config(path: Path, message_type: type[Message]) -> Message:
    """``path`` parsed as text format into a new ``message_type`` (raises on any bad field)."""
    return text_format.Parse(path.read_text(), message_type())


@pytest.fixture(scope="module")
def model_config() -> model_server_config_pb2.ModelConfig:
    """The single model in models/models.config."""
    server_config = parse_config(
        MODELS / "models.config", model_server_config_pb2.ModelServerConfig
    )
    configs = server_config.model_config_list.config
    assert len(configs) == 1, "models.config should serve exactly one model"
    return configs[0]


@pytest.fixture(scope="module")
def batching() -> Message:
    return parse_config(MODELS / "batching.config", BatchingParameters)


# --- Dockerfiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, ENTRYPOINT, ...
    args: str  # everything after the keyword, continuation lines joined

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD/VOLUME (fails on shell form)."""
        assert self.args.startswith("["), f"{self.keyword} should use exec form: {self.args}"
        return json.loads(self.args)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuation lines joined."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue  # Docker drops comment lines, also inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued instruction"
    return instructions


def instructions(path: Path, keyword: str) -> list[Instruction]:
    return [i for i in parse_dockerfile(path) if i.keyword == keyword]


def only(path: Path, keyword: str) -> Instruction:
    found = instructions(path, keyword)
    assert len(found) == 1, f"{path.name} should have one {keyword}, has {len(found)}"
    return found[0]


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not ``--from`` a stage)."""
    result = []
    for copy in instructions(path, "COPY"):
        words = copy.exec_form() if copy.args.startswith("[") else shlex.split(copy.args)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def server_flags() -> dict[str, str]:
    """``--name=value`` flags of tensorflow_model_server in Dockerfile.serve (ENTRYPOINT + CMD)."""
    entrypoint = only(SERVE, "ENTRYPOINT").exec_form()
    assert entrypoint[0] == "tensorflow_model_server"
    flags: dict[str, str] = {}
    for arg in entrypoint[1:] + only(SERVE, "CMD").exec_form():
        assert arg.startswith("--") and "=" in arg, f"write flags as --name=value: {arg!r}"
        name, value = arg[2:].split("=", 1)
        assert name not in flags, f"--{name} is given twice"
        flags[name] = value
    return flags


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, posix) out of the build context.

    Enough of Docker's rules for this file: a pattern matches from the context root, ``**/``
    matches at any depth, and an ignored folder hides everything below it."""
    parts = PurePosixPath(path).parts
    folders = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # models, models/x, ...
    for pattern in dockerignore_patterns():
        assert not pattern.startswith("!"), "exceptions are not modelled by this test"
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(folder, pattern) for folder in folders)
        if hit:
            return True
    return False


# --- models/ -----------------------------------------------------------------------------------


def test_models_config_serves_deeplabv3_from_an_absolute_path(model_config):
    assert model_config.name == "deeplabv3"
    assert model_config.model_platform == "tensorflow"
    base_path = PurePosixPath(model_config.base_path)
    # TF Serving needs absolute base paths; /models is where Dockerfile.serve puts models/.
    assert base_path.is_absolute()
    assert base_path == PurePosixPath("/models") / model_config.name


def test_models_config_serves_only_the_latest_version(model_config):
    policy = model_config.model_version_policy
    assert policy.WhichOneof("policy_choice") == "latest"
    assert policy.latest.num_versions == 1
    # Labels go with a `specific` policy (canary or pinned rollback; see models.config).
    assert not model_config.version_labels


def test_batch_sizes_increase_up_to_the_maximum(batching):
    sizes = list(batching.allowed_batch_sizes)
    assert sizes, "allowed_batch_sizes limits the batch shapes the GPU sees"
    assert sizes == sorted(set(sizes)), f"allowed_batch_sizes must strictly increase: {sizes}"
    assert sizes[0] >= 1
    # BatchingSession refuses a config whose last allowed size is not max_batch_size.
    assert sizes[-1] == batching.max_batch_size.value


def test_batching_is_tuned_for_latency_bound_frames(batching):
    assert 1 < batching.max_batch_size.value <= 32
    # Frames are latency-bound: a batch waits at most a few milliseconds for company.
    assert 0 < batching.batch_timeout_micros.value <= 10_000
    assert batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= batching.num_batch_threads.value


def test_batching_never_pads_frames(batching):
    # Padding height/width would change the segmentation; different sizes must fail instead.
    assert batching.pad_variable_length_inputs is False
    # Stated, not left to the proto3 default, so the choice is visible where it is made.
    text = (MODELS / "batching.config").read_text()
    assert re.search(r"^pad_variable_length_inputs:\s*false\s*$", text, re.MULTILINE)


def test_prometheus_metrics_are_served_on_the_standard_path():
    monitoring = parse_config(MODELS / "monitoring.config", MonitoringConfig)
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == PROMETHEUS_PATH


def test_mirrored_messages_reject_misspelt_or_mistyped_fields():
    """The hand-built messages are strict, so the config tests above can fail."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 8", BatchingParameters())  # a wrapper, not an int
    with pytest.raises(text_format.ParseError):
        text_format.Parse("prometheus_config { enabled: true }", MonitoringConfig())


# --- Both Dockerfiles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "repository"),
    [(SERVE, "tensorflow/serving"), (TRAIN, "tensorflow/tensorflow")],
    ids=["serve", "train"],
)
def test_base_image_is_an_official_gpu_image_pinned_to_a_release(dockerfile, repository):
    image = only(dockerfile, "FROM").args.split()[0]
    name, _, tag = image.partition(":")
    assert name == repository
    # An exact release (never latest/nightly), GPU flavour.
    assert re.fullmatch(r"\d+\.\d+\.\d+-gpu", tag), f"pin an exact -gpu release, not {tag!r}"


def test_training_image_carries_the_tensorflow_that_pyproject_pins():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = dict(dep.split("==") for dep in pyproject["project"]["dependencies"] if "==" in dep)
    tag = only(TRAIN, "FROM").args.split(":")[1]
    assert tag == f"{pins['tensorflow']}-gpu", "pip install . would replace the image's TF"


@pytest.mark.parametrize("dockerfile", [SERVE, TRAIN, EMBEDDED], ids=["serve", "train", "embedded"])
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    found = copies(dockerfile)
    assert found, f"{dockerfile.name} copies nothing"
    for sources, _ in found:
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile.name} copies missing {source}"
            assert not ignored(source.rstrip("/")), f".dockerignore hides {source}"


def test_dockerignore_keeps_exported_versions_but_not_half_written_ones():
    assert not ignored("models/deeplabv3/3/saved_model.pb")
    assert not ignored("models/models.config")
    assert ignored("models/deeplabv3/.export-4-0123abcd/saved_model.pb")
    for bulky in (".venv/bin/python", "data/VOCdevkit", "runs/voc/best.weights.h5", ".git/HEAD"):
        assert ignored(bulky), f"{bulky} would bloat the build context"


# --- Dockerfile.serve --------------------------------------------------------------------------


def test_serve_image_holds_the_model_repository_at_slash_models(model_config):
    assert (["models/"], "/models/") in copies(SERVE)
    # models.config's base path is inside the copied folder.
    assert PurePosixPath(model_config.base_path).parent == PurePosixPath("/models")


def test_server_flags_exist_in_tensorflow_model_server():
    unknown = set(server_flags()) - KNOWN_SERVER_FLAGS
    assert not unknown, f"not flags of tensorflow_model_server (see main.cc): {sorted(unknown)}"


def test_server_flags_follow_the_serving_contract():
    flags = server_flags()
    assert flags["port"] == "8500"
    assert flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == "true"
    assert flags["enable_model_warmup"] == "true"
    # uint8 outputs travel as tensor_content bytes (DESIGN.md, serving contract).
    assert flags["enable_serialization_as_tensor_content"] == "true"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0  # 0 = read once, never again
    assert int(flags["file_system_poll_wait_seconds"]) > 0
    assert 0 < float(flags["per_process_gpu_memory_fraction"]) <= 1


@pytest.mark.parametrize("flag", sorted(CONFIG_MESSAGES))
def test_config_flags_name_repository_files_that_parse(flag):
    value = PurePosixPath(server_flags()[flag])
    assert value.parent == PurePosixPath("/models"), f"--{flag} should point into /models"
    path = MODELS / value.name  # COPY models/ /models/
    assert path.is_file(), f"--{flag}={value}: {path.relative_to(REPO)} does not exist"
    parse_config(path, CONFIG_MESSAGES[flag])


def test_serve_exposes_grpc_and_rest_ports():
    ports = {port for expose in instructions(SERVE, "EXPOSE") for port in expose.args.split()}
    assert {"8500", "8501"} <= ports


def test_healthcheck_waits_for_an_available_version(model_config):
    check = only(SERVE, "HEALTHCHECK").args
    assert " CMD " in f" {check} ", "HEALTHCHECK needs a command"
    url = rf"http://localhost:8501/v1/models/{re.escape(model_config.name)}(?=\s|$)"
    assert re.search(url, check), f"probe the REST status of {model_config.name!r}: {check}"
    assert "AVAILABLE" in check
    assert "curl -f" in check, "curl must fail on HTTP errors (404 before the model is known)"


# --- Dockerfile.train --------------------------------------------------------------------------


def test_train_image_runs_the_training_cli():
    assert only(TRAIN, "ENTRYPOINT").exec_form() == ["python", "-m", "training"]
    assert only(TRAIN, "CMD").exec_form() == ["--help"]


def test_train_image_keeps_data_runs_and_models_on_volumes():
    volumes = only(TRAIN, "VOLUME").exec_form()
    assert {"/data", "/runs", "/models"} <= set(volumes)


def test_train_image_installs_every_package_of_the_project():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = include["packages"]["find"]["include"]
    packages = {
        path.name
        for path in REPO.iterdir()
        if (path / "__init__.py").is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns)
    }
    copied = {source.rstrip("/") for sources, _ in copies(TRAIN) for source in sources}
    assert "training" in packages
    assert packages <= copied, f"not copied, so not installed: {sorted(packages - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied
    runs = [run.args for run in instructions(TRAIN, "RUN")]
    assert any("pip install" in run and run.endswith(" .") for run in runs), "install the project"


# --- Dockerfile.embedded -----------------------------------------------------------------------


def test_embedded_image_runs_the_embedded_server_on_the_contracts_ports(model_config):
    from client import contract

    assert only(EMBEDDED, "ENTRYPOINT").exec_form() == ["python", "-m", "serving"]
    command = only(EMBEDDED, "CMD").exec_form()
    assert command[:2] == ["--model-config", "/models/models.config"]
    assert (["models/"], "/models/") in copies(EMBEDDED)
    ports = {port for expose in instructions(EMBEDDED, "EXPOSE") for port in expose.args.split()}
    assert {str(contract.GRPC_PORT), str(contract.REST_PORT), str(contract.GATEWAY_PORT)} <= ports
    image = only(EMBEDDED, "FROM").args.split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), f"pin an exact Python: {image}"
    from serving.cli import build_parser

    build_parser().parse_args(command)  # every flag of CMD exists
