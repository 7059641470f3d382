"""Export's inference rewrites compute the same function as the model as trained: native
dilated convolutions against TensorFlow's space-to-batch lowering, and the options export
records (batch-norm folding has its own tests)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from client import contract
from tests.helpers import call_signature
from training.export.publish import export_run
from training.export.rewrites import (
    NO_OPTIMIZATIONS,
    NativeDilatedConv2D,
    native_dilation_layers,
    with_native_dilation,
)
from training.model.deeplab import build_deeplabv3


def _graph_ops(function, *args) -> set[str]:
    concrete = tf.function(function).get_concrete_function(*args)
    return {op.type for op in concrete.graph.get_operations()}


@pytest.mark.parametrize(
    ("backbone", "dilated_layers", "native_type"),
    [("mobilenetv2", 3, NativeDilatedConv2D), ("resnet50", 6, NativeDilatedConv2D)],
)
def test_native_dilation_computes_the_same_logits(backbone, dilated_layers, native_type):
    model = build_deeplabv3(21, backbone=backbone, backbone_weights=None)
    rng = np.random.default_rng(0)
    # Scaled weights: random DeepLab logits vanish (~1e-12) through untrained batch norms.
    model.set_weights([w * 1.5 if w.ndim == 4 else w for w in model.get_weights()])
    fast = with_native_dilation(model)
    native = native_dilation_layers(fast)
    assert len(native) == dilated_layers and any(isinstance(n, native_type) for n in native)
    assert native_dilation_layers(model) == []
    frames = rng.random((2, 96, 128, 3)).astype("float32")
    expected, got = model(frames, training=False), fast(frames, training=False)
    scale = float(tf.reduce_max(tf.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale)
    spec = tf.TensorSpec((1, 96, 128, 3), tf.float32)
    lowered = _graph_ops(lambda x: model(x, training=False), spec)
    native = _graph_ops(lambda x: fast(x, training=False), spec)
    assert "SpaceToBatchND" in lowered
    # MobileNetV2's depthwise blocks keep theirs (float16 CPUs cannot run them natively).
    assert ("SpaceToBatchND" in native) == (backbone == "mobilenetv2")


def test_export_applies_both_rewrites_by_default_and_none_when_told(trained_run, tmp_path):
    default = export_run(trained_run.path, tmp_path, warmup_sizes=((48, 64),))
    plain = export_run(
        trained_run.path, tmp_path, warmup_sizes=((48, 64),), optimizations=NO_OPTIMIZATIONS
    )
    assert contract.read_export_info(default.path)["optimizations"] == {
        "native_dilation": True, "fold_batch_norms": True
    }  # fmt: skip
    assert contract.read_export_info(plain.path)["optimizations"] == {
        "native_dilation": False, "fold_batch_norms": False
    }  # fmt: skip
    frame = np.random.default_rng(1).integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
    answers, ops = [], []
    for report in (default, plain):
        signature = tf.saved_model.load(str(report.path)).signatures["serving_default"]
        answers.append(call_signature(signature, images=frame)["class_map"].numpy())
        graph = signature.graph.as_graph_def()
        nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
        ops.append([node.op for node in nodes])
    # The test model is MobileNetV2: its three ASPP convolutions lose their lowering, its
    # depthwise blocks keep theirs; batch norms are gone from the default export.
    assert 0 < ops[0].count("SpaceToBatchND") < ops[1].count("SpaceToBatchND")
    assert ops[0].count("Rsqrt") == 0 < ops[1].count("Rsqrt")  # Keras' batch norm: x·rsqrt(var+ε)
    assert np.mean(answers[0] == answers[1]) >= 0.999


def test_export_command_flags_turn_rewrites_off(trained_run, tmp_path):
    from training.cli import main

    argv = ["export", f"--run={trained_run.path}", f"--models-dir={tmp_path}", "--version=3"]
    assert main([*argv, "--no-fold-batch-norms"]) == 0
    recorded = contract.read_export_info(tmp_path / "deeplabv3" / "3")["optimizations"]
    assert recorded == {"native_dilation": True, "fold_batch_norms": False}
