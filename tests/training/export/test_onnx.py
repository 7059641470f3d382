"""``export-onnx``: the serving graph with explicitly padded dilated convolutions, run and
verified in ONNX Runtime, with the onboard sidecar beside it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.cli import main
from training.export import onboard
from training.export.rewrites import (
    PaddedDilatedConv2D,
    PaddedDilatedDepthwiseConv2D,
    with_explicit_padding,
)
from training.model.deeplab import build_deeplabv3

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    ("backbone", "padded_type"),
    [("mobilenetv2", PaddedDilatedDepthwiseConv2D), ("resnet50", PaddedDilatedConv2D)],
)
def test_explicit_padding_computes_the_same_logits(backbone, padded_type):
    model = build_deeplabv3(21, backbone=backbone, backbone_weights=None)
    # Scaled weights: random DeepLab logits vanish (~1e-12) through untrained batch norms.
    model.set_weights([w * 1.5 if w.ndim == 4 else w for w in model.get_weights()])
    padded = with_explicit_padding(model)
    layers = [layer for layer in padded._flatten_layers() if isinstance(layer, padded_type)]
    assert layers
    frames = np.random.default_rng(0).random((1, 64, 96, 3)).astype("float32")
    expected, got = model(frames, training=False), padded(frames, training=False)
    scale = float(tf.reduce_max(tf.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale)


def test_cli_exports_an_onnx_model_onnx_runtime_runs(trained_run, tmp_path, capsys):
    from training.export.onnx import onnx_runner

    out = tmp_path / "deeplabv3.onnx"
    assert main(["export-onnx", f"--run={trained_run.path}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "all checks:" in printed and "passed" in printed
    info = onboard.read_sidecar(out)
    assert info["runtime"] == "onnxruntime" and info["resize_in"] == "model"
    assert info["inputs"]["images"]["shape"] == [None, None, None, 3]
    assert info["verification"]["agreement"] >= 0.999
    segment, session = onnx_runner(out.read_bytes())
    assert [i.name for i in session.get_inputs()] == ["images", "output_size"]
    assert {o.name for o in session.get_outputs()} == {"class_map", "confidence"}
    outputs = segment(np.zeros((2, 37, 53, 3), np.uint8))
    assert outputs["class_map"].shape == (2, 37, 53) and outputs["class_map"].dtype == np.uint8
    planner = segment(np.zeros((2, 37, 53, 3), np.uint8), [[9, 13]])
    assert planner["class_map"].shape == planner["confidence"].shape == (2, 9, 13)
