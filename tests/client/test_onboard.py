"""The onboard segmenter on real exports of the trained fixture run: the TFLite model through
LiteRT and the ONNX model through ONNX Runtime, answering as the server does, and every bad
input named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from client import (
    InvalidFrame,
    InvalidResponse,
    LatestFrameSource,
    OnboardModelError,
    OnboardSegmenter,
    SegmentationClient,
    SegmentationStream,
)
from client.onboard import SIDECAR_RUNTIMES
from client.synthetic import synthetic_frames

REPO = Path(__file__).resolve().parents[2]
FRAME_SIZE = (96, 128)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(synthetic_frames(4, size=FRAME_SIZE, seed=5))


@pytest.fixture(scope="module", params=["tflite", "onnx"])
def model(request) -> Path:
    return request.getfixturevalue(f"{request.param}_model")


@pytest.fixture(scope="module")
def onboard(model):
    with OnboardSegmenter(model, threads=1) as segmenter:
        yield segmenter


def copy_model(model: Path, folder: Path, name: str | None = None) -> Path:
    """The model and its sidecar, copied into ``folder`` (the sidecar's ``model`` and
    ``runtime`` as the new name says)."""
    target = folder / (name or model.name)
    shutil.copy(model, target)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    sidecar["model"] = target.name
    sidecar["runtime"] = SIDECAR_RUNTIMES[target.suffix]
    target.with_suffix(".json").write_text(json.dumps(sidecar))
    return target


def test_answers_as_the_server_does(onboard, target, frames):
    with SegmentationClient(target) as remote:
        assert onboard.metadata().class_names == remote.metadata().class_names
        assert np.array_equal(onboard.metadata().palette, remote.metadata().palette)
        assert onboard.metadata().input_size == remote.metadata().input_size
        for frame in frames:
            mine = onboard.segment(frame, confidence=True)
            theirs = remote.segment(frame, confidence=True)
            assert mine.source == "onboard" and theirs.source == "remote"
            assert mine.class_map.shape == mine.confidence.shape == FRAME_SIZE
            assert mine.class_map.dtype == np.uint8 and not mine.class_map.flags.writeable
            equal = np.mean(mine.class_map == theirs.class_map)
            assert equal >= 0.99, f"{onboard.path.name}: {equal:.2%} of pixels as the server's"
            assert np.abs(mine.confidence.astype(int) - theirs.confidence).mean() < 2
            assert mine.timings.rpc > 0 and mine.request_bytes == mine.response_bytes == 0


def test_color_order_threads_and_the_reference_kernels(onboard, model, frames):
    frame = frames[0]
    expected = onboard.segment(frame).class_map
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    assert np.array_equal(onboard.segment(rgb, color="rgb").class_map, expected)
    assert onboard.segment(frame).confidence is None  # asked for the class map alone
    with OnboardSegmenter(model, threads=2, xnnpack=False) as other:
        assert np.mean(other.segment(frame).class_map == expected) >= 0.999
    odd = np.ascontiguousarray(frames[1][:77, :101])  # another size: the runtime re-allocates
    assert onboard.segment(odd).class_map.shape == (77, 101)


def test_int8_model_is_resized_by_the_runner_and_agrees(int8_model, tflite_model, frames):
    with OnboardSegmenter(int8_model) as int8, OnboardSegmenter(tflite_model) as float32:
        assert int8.sidecar.network_size is not None, "int8 runs at one fixed network size"
        assert int8.metadata().class_names == float32.metadata().class_names
        for frame in frames:
            small = int8.segment(frame, confidence=True)
            assert small.class_map.shape == small.confidence.shape == FRAME_SIZE
            equal = np.mean(small.class_map == float32.segment(frame).class_map)
            assert equal >= 0.9, f"int8: {equal:.2%} of pixels as float32's"


def test_a_runner_resize_sidecar_feeds_the_model_its_network_size(tflite_model, tmp_path, frames):
    model = copy_model(tflite_model, tmp_path)
    fields = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(
        json.dumps({**fields, "resize_in": "runner", "network_size": [48, 64]})
    )
    frame = frames[0]
    with OnboardSegmenter(model) as runner, OnboardSegmenter(tflite_model) as plain:
        result = runner.segment(frame)
        small = cv2.resize(frame, (64, 48), interpolation=cv2.INTER_LINEAR)
        expected = cv2.resize(
            plain.segment(small).class_map, FRAME_SIZE[::-1], interpolation=cv2.INTER_NEAREST
        )
    assert np.array_equal(result.class_map, expected)


def test_output_size_as_the_server_gives_it(model, int8_model, target, frames):
    planner = (24, 32)
    with (
        OnboardSegmenter(model, output_size=planner) as small,
        OnboardSegmenter(int8_model, output_size=planner) as int8,
        SegmentationClient(target, output_size=planner) as remote,
    ):
        assert small._takes_output_size, "float exports resize their logits to output_size"
        assert not int8._takes_output_size, "int8's runner resizes its fixed-size map"
        for frame in frames:
            mine = small.segment(frame, confidence=True)
            assert mine.class_map.shape == mine.confidence.shape == planner
            equal = np.mean(mine.class_map == remote.segment(frame).class_map)
            assert equal >= 0.97, f"{model.name}: {equal:.2%} of pixels as the server's"
            assert int8.segment(frame).class_map.shape == planner
        with pytest.raises(InvalidFrame, match="larger than the frame"):
            small.segment(frames[0][:10, :10])


def test_the_sidecar_format_is_the_exporters(tflite_model):
    from client import onboard
    from training.export import onboard as exporter

    assert onboard.SIDECAR_FORMAT == exporter.SIDECAR_FORMAT
    assert onboard.RESIZE_IN == exporter.RESIZE_IN
    assert json.loads(tflite_model.with_suffix(".json").read_text())["format"] == (
        onboard.SIDECAR_FORMAT
    )


def test_streams_like_a_client(onboard):
    camera = LatestFrameSource(synthetic_frames(6, size=FRAME_SIZE), latest_only=False)
    with camera:
        stream = SegmentationStream(onboard, camera)
        results = list(stream)
    assert [r.index for r in results] == list(range(6))
    assert all(r.ok and r.source == "onboard" for r in results)
    assert stream.stats.onboard == 6 and stream.stats.remote == 0


def test_bad_frames_are_named(onboard):
    frame = np.zeros((*FRAME_SIZE, 3), np.uint8)
    with pytest.raises(InvalidFrame, match="dtype must be uint8, got float32"):
        onboard.segment(frame.astype(np.float32))
    with pytest.raises(InvalidFrame, match=r"H×W×3 .* got shape \(96, 128\)"):
        onboard.segment(frame[..., 0])
    with pytest.raises(InvalidFrame, match="color must be"):
        onboard.segment(frame, color="yuv")


def test_missing_and_corrupt_model_files_are_named(tflite_model, tmp_path):
    missing = tmp_path / "gone.tflite"
    with pytest.raises(OnboardModelError, match=f"{missing}: no such model file"):
        OnboardSegmenter(missing)
    with pytest.raises(OnboardModelError, match=r"expected a \.tflite or \.onnx model file"):
        OnboardSegmenter(tflite_model.with_suffix(".json"))
    runtimes = {".tflite": "TFLite model LiteRT", ".onnx": "ONNX model ONNX Runtime"}
    for suffix, runtime in runtimes.items():
        corrupt = copy_model(tflite_model, tmp_path, f"corrupt{suffix}")
        corrupt.write_bytes(tflite_model.read_bytes()[:4096])  # a truncated copy
        with pytest.raises(OnboardModelError, match=f"{corrupt}: not an? {runtime} can load"):
            OnboardSegmenter(corrupt)


def test_sidecars_missing_broken_or_of_another_model_are_named(tflite_model, tmp_path):
    model = copy_model(tflite_model, tmp_path)
    sidecar = model.with_suffix(".json")
    good = json.loads(sidecar.read_text())

    def refused(fields_or_text, pattern: str) -> None:
        text = fields_or_text if isinstance(fields_or_text, str) else json.dumps(fields_or_text)
        sidecar.write_text(text)
        with pytest.raises(OnboardModelError, match=pattern):
            OnboardSegmenter(model)

    refused("{not json", f"{sidecar}: not a readable JSON sidecar")
    refused({**good, "model": "other.tflite"}, r"field 'model' is 'other.tflite', not 'deeplab")
    refused({k: v for k, v in good.items() if k != "class_names"}, "field 'class_names' is missing")
    refused({**good, "format": 99}, "field 'format' is 99; this client reads format 1")
    refused({**good, "runtime": "onnxruntime"}, "field 'runtime' is 'onnxruntime', but deeplab")
    refused({**good, "resize_in": "runner", "network_size": None}, "field 'network_size' must")
    refused({**good, "palette": good["palette"][:-1]}, r"field 'palette' must be one \[R, G, B\]")
    refused({**good, "input_size": [64]}, r"field 'input_size' must be \[height, width\]")
    refused(
        {**good, "outputs": {"logits": "float32"}},
        r"field 'outputs' says \['logits'\], but deeplabv3.tflite has \['class_map', 'confid",
    )
    sidecar.unlink()
    with pytest.raises(OnboardModelError, match=f"{sidecar}: no sidecar beside deeplabv3.tflite"):
        OnboardSegmenter(model)


def test_a_sidecar_with_fewer_classes_than_the_model_gives_is_named(tflite_model, tmp_path):
    model = copy_model(tflite_model, tmp_path)
    frame = next(synthetic_frames(1, size=FRAME_SIZE, seed=5))
    with OnboardSegmenter(model) as onboard:
        highest = int(onboard.segment(frame).class_map.max())
    assert highest > 0, "the trained fixture model should find some object in a synthetic scene"
    fields = json.loads(model.with_suffix(".json").read_text())
    fields["class_names"] = fields["class_names"][:highest]
    fields["palette"] = fields["palette"][:highest]
    model.with_suffix(".json").write_text(json.dumps(fields))
    with OnboardSegmenter(model) as onboard, pytest.raises(InvalidResponse) as error:
        onboard.segment(frame)
    assert f"class id {highest}" in str(error.value) and "field 'class_names'" in str(error.value)


def test_bench_measures_the_onboard_model_alone(tflite_model):
    result = subprocess.run(
        [sys.executable, "-m", "client", "bench", "--onboard", str(tflite_model), "--threads",
         "1", "--frames", "8", "--warmup", "1", "--size", "96x128", "--fps", "0", "--quiet",
         "--output-size", "24x32"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "answers: remote 0, onboard 8 (onboard: rpc is the inference" in result.stdout
    assert "maps at: 24x32 (output_size)" in result.stdout
    assert "failed frames: 0" in result.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "client", "bench", "--onboard", str(tflite_model), "--target",
         "127.0.0.1:1"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and "leave out --target" in refused.stderr
