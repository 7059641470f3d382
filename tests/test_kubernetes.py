"""The Kubernetes manifests (deploy/kubernetes, kustomize) rendered by `kubectl kustomize` and
checked against the serving contract: ports, probes, selectors, the model name, the images'
flags; and the training Job against what multi-worker training needs. Nothing is applied
(there is no cluster here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from client import contract
from serving.cli import build_parser as server_parser
from serving.gateway.cli import build_parser as gateway_parser
from training.cli import build_parser as training_parser
from training.learning import cluster

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "deploy" / "kubernetes"
# The training Job renders on its own, not with every serving overlay.
TRAINING = KUBERNETES / "training"
# `kubectl kustomize deploy/kubernetes/<overlay>`: every other folder beside the base.
OVERLAYS = sorted(
    p.name for p in KUBERNETES.iterdir() if p.is_dir() and p.name not in ("base", TRAINING.name)
)


def render(folder: Path) -> dict[tuple[str, str], dict]:
    """``(kind, name)`` → object, as ``kubectl kustomize`` renders ``folder``."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered here")
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout)}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, dict]:
    return request.param, render(KUBERNETES / request.param)


def container(objects: dict, deployment: str) -> dict:
    (only,) = objects["Deployment", deployment]["spec"]["template"]["spec"]["containers"]
    return only


def ports(spec: dict) -> dict[str, int]:
    return {p["name"]: p.get("containerPort", p.get("port")) for p in spec["ports"]}


def test_the_overlays_are_the_gpu_and_cpu_clusters():
    assert OVERLAYS == ["cpu", "gpu"]
    assert (TRAINING / "kustomization.yaml").is_file()


def test_every_overlay_renders_the_same_parts(rendered):
    _, objects = rendered
    assert set(objects) == {
        ("PersistentVolumeClaim", "models"),
        ("Deployment", "model-server"),
        ("Service", "model-server-grpc"),
        ("Service", "model-server-http"),
        ("PodDisruptionBudget", "model-server"),
        ("HorizontalPodAutoscaler", "model-server"),
        ("Deployment", "gateway"),
        ("Service", "gateway"),
    }
    for obj in objects.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rc-segmentation"


def test_the_model_servers_ports_and_services_follow_the_contract(rendered):
    _, objects = rendered
    server = container(objects, "model-server")
    assert ports(server) == {"grpc": contract.GRPC_PORT, "http": contract.REST_PORT}
    grpc_service = objects["Service", "model-server-grpc"]["spec"]
    assert grpc_service["clusterIP"] == "None"  # headless: one DNS answer per ready pod
    assert ports(grpc_service) == {"grpc": contract.GRPC_PORT}
    assert ports(objects["Service", "model-server-http"]["spec"]) == {"http": contract.REST_PORT}
    pods = objects["Deployment", "model-server"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        grpc_service["selector"],
        objects["Service", "model-server-http"]["spec"]["selector"],
        objects["PodDisruptionBudget", "model-server"]["spec"]["selector"]["matchLabels"],
        objects["Deployment", "model-server"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pods.items()
    target = objects["HorizontalPodAutoscaler", "model-server"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "model-server")
    mount = server["volumeMounts"][0]
    assert mount["mountPath"] == "/models" and mount["readOnly"] is True


def test_model_servers_are_ready_only_with_the_model_available(rendered):
    overlay, objects = rendered
    server = container(objects, "model-server")
    readiness = server["readinessProbe"]
    if overlay == "cpu":  # the embedded server's grpc.health.v1: SERVING iff AVAILABLE
        assert readiness["grpc"]["port"] == contract.GRPC_PORT
        assert "nvidia.com/gpu" not in server["resources"].get("limits", {})
        flags = server_parser().parse_args(server["args"])
        assert (flags.port, flags.rest_port) == (contract.GRPC_PORT, contract.REST_PORT)
        assert flags.model_config == Path("/models/models.config")
        grace = objects["Deployment", "model-server"]["spec"]["template"]["spec"]
        assert grace["terminationGracePeriodSeconds"] > flags.grace
    else:  # TF Serving: its REST model status, as Dockerfile.serve's HEALTHCHECK
        command = " ".join(readiness["exec"]["command"])
        url = f"http://localhost:{contract.REST_PORT}/v1/models/{contract.DEFAULT_MODEL_NAME}"
        assert f"curl -fsS {url}" in command and '"AVAILABLE"' in command
        assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["livenessProbe"] and server["startupProbe"]
    assert "latest" not in server["image"]


def test_the_gateway_reaches_every_model_server_and_probes_its_own_routes(rendered):
    _, objects = rendered
    gateway = container(objects, "gateway")
    assert gateway["args"][0] == "gateway"
    flags = gateway_parser().parse_args(gateway["args"][1:])
    assert flags.target == [f"dns:///model-server-grpc:{contract.GRPC_PORT}"]
    assert flags.port == contract.GATEWAY_PORT == ports(gateway)["http"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ports(objects["Service", "gateway"]["spec"]) == {"http": contract.GATEWAY_PORT}
    assert "latest" not in gateway["image"]


@pytest.fixture(scope="module")
def training() -> dict:
    return render(TRAINING)


def job_container(objects: dict) -> dict:
    (only,) = objects["Job", "train"]["spec"]["template"]["spec"]["containers"]
    return only


def test_the_training_kustomization_renders_the_job_its_service_and_its_volume(training):
    assert set(training) == {
        ("Job", "train"),
        ("Service", "train-workers"),
        ("PersistentVolumeClaim", "training"),
    }
    for obj in training.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rc-segmentation"
    assert training["PersistentVolumeClaim", "training"]["spec"]["accessModes"] == [
        "ReadWriteMany"  # every worker reads the data and resumes from the chief's state
    ]


def test_every_training_worker_builds_its_tf_config_from_its_pod_index(training):
    job = training["Job", "train"]["spec"]
    pod = job["template"]
    train = job_container(training)
    assert job["completionMode"] == "Indexed"
    env = {variable["name"]: variable["value"] for variable in train["env"]}
    configs = [
        cluster.tf_config({**env, cluster.INDEX_ENV: str(index)})
        for index in range(job["completions"])
    ]
    hosts = configs[0]["cluster"]["worker"]
    assert job["parallelism"] == job["completions"] == len(hosts)
    assert [config["task"] for config in configs] == [
        {"type": "worker", "index": index} for index in range(len(hosts))
    ]
    assert all(config["cluster"] == configs[0]["cluster"] for config in configs)
    # An Indexed Job's pod i has host name <job>-<i>; its subdomain is the headless Service.
    service = training["Service", "train-workers"]
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    port = ports(service["spec"])["collective"]
    assert ports(train)["collective"] == port
    subdomain = pod["spec"]["subdomain"]
    assert hosts == [f"train-{index}.{subdomain}:{port}" for index in range(len(hosts))]


def test_the_training_job_runs_python_m_training_train_on_its_volume(training):
    train = job_container(training)
    assert train["command"] == ["python", "-m", "training"] and train["args"][0] == "train"
    flags = training_parser().parse_args(train["args"])
    mounts = {mount["mountPath"] for mount in train["volumeMounts"]}
    assert {"/data", "/runs"} <= mounts
    assert flags.data.parts[1] == "data" and Path(flags.out).parts[1] == "runs"
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "latest" not in train["image"]
