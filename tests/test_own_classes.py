"""Own classes end to end, through the commands a user runs: a CVAT "Segmentation mask 1.1"
dataset of an indoor world (RGB colour masks, labelmap.txt, only default.txt) is checked,
trained on, exported and served; the client, the gateway and a driving policy all speak its
classes by name and colour."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from client import SegmentationClient
from client.contract import EXPORT_INFO_PATH
from client.navigation import DrivingPolicy
from training.data.labelmap import read_labelmap

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def training(*args: object) -> subprocess.CompletedProcess:
    """``python -m training ARGS`` as a user runs it; fails the test, showing its output, if
    it exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-m", "training", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow  # trains a few steps and exports (~2 min)
def test_a_cvat_export_of_own_classes_trains_serves_and_drives(tmp_path):
    from fastapi.testclient import TestClient

    from serving.gateway.app import create_app
    from serving.gateway.settings import GatewaySettings
    from serving.model_config import single_model
    from serving.options import ServerOptions
    from serving.server import EmbeddedServer

    root, run, models = tmp_path / "indoor", tmp_path / "run", tmp_path / "models"
    training("data", "synth", "--classes", "indoor", "--out", root, "--count", 24,
             "--seed", 0, "--size", "160x120")  # fmt: skip
    assert sorted(p.name for p in (root / "ImageSets" / "Segmentation").iterdir()) == [
        "default.txt"
    ]
    labelmap = read_labelmap(root / "labelmap.txt")
    non_voc = set(labelmap.names) - {"background"}
    assert len(non_voc) >= 5 and "floor" in non_voc

    checked = training("data", "check", "--root", root).stdout
    assert "no problems found" in checked and "floor" in checked

    training("train", "--preset", "smoke", "--data", root, "--out", run)
    assert read_labelmap(run / "labelmap.txt") == labelmap
    splits = {p.stem for p in (run / "splits").glob("*.txt")}
    assert {"train", "val"} <= splits

    training("export", "--run", run, "--models-dir", models)
    version = models / "deeplabv3" / "1"
    info = json.loads((version / EXPORT_INFO_PATH).read_text())
    assert info["class_names"] == list(labelmap.names)
    assert info["palette"] == [list(c) for c in labelmap.colors]

    server = EmbeddedServer(
        [single_model("deeplabv3", models / "deeplabv3")],
        ServerOptions(host="127.0.0.1", port=0, poll_seconds=60),
    )
    server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        with SegmentationClient(target) as client:
            metadata = client.metadata()
            frame = np.full((120, 160, 3), 90, np.uint8)
            class_map = client.segment(frame).class_map
        assert metadata.class_names == labelmap.names
        assert [tuple(c) for c in metadata.palette.tolist()] == list(labelmap.colors)
        assert class_map.max() < labelmap.num_classes

        settings = GatewaySettings(targets=(target,))
        jpeg = next((root / "JPEGImages").glob("*.jpg")).read_bytes()
        with TestClient(create_app(settings)) as http:
            model = http.get("/v1/model").json()
            answer = http.post(
                "/v1/segment?format=json", content=jpeg, headers={"Content-Type": "image/jpeg"}
            ).json()
            png = http.post(
                "/v1/segment", content=jpeg, headers={"Content-Type": "image/jpeg"}
            ).content
        assert model["class_names"] == list(labelmap.names)
        assert model["palette"] == [list(c) for c in labelmap.colors]
        palette = Image.open(io.BytesIO(png)).getpalette()[: 3 * labelmap.num_classes]
        assert palette == [v for color in labelmap.colors for v in color]
        assert answer["class_names"] == list(labelmap.names)
        assert {c["name"] for c in answer["classes_present"]} <= set(labelmap.names)

        policy = DrivingPolicy.from_metadata(metadata, traversable=["floor"])
        floor = labelmap.names.index("floor")
        assert policy.obstacle_classes == set(range(labelmap.num_classes)) - {floor}
    finally:
        server.stop(grace=0.5)
