"""A DeepLab v3+ run (``train … --decoder``) through every export, unchanged: the run records
``decoder`` (``RunFolder.load_model``, which evaluate, predict and the exports use, rebuilds
v3+), and each export verifies its own answers against the Keras model."""

from __future__ import annotations

import pytest

from training.cli import main
from training.export import onboard
from training.learning.run_folder import RunFolder

pytestmark = pytest.mark.slow


def test_a_v3plus_run_exports_verified(synth_root, tmp_path, capsys):
    run = tmp_path / "plus"
    argv = ["train", f"--data={synth_root}", f"--out={run}", "--preset=smoke", "--decoder"]
    argv.append("--epochs=1")  # 6 steps: logits of a realistic scale, class maps with structure
    assert main([*argv, "--keras-verbose=0"]) == 0
    config = RunFolder(run).read_config()
    assert config.decoder and not config.sync_batch_norm
    model = RunFolder(run).load_model()
    assert model.name == "deeplabv3plus_mobilenetv2_os16"
    assert "decoder_concat" in {layer.name for layer in model.layers}

    models = tmp_path / "models"
    assert main(["export", f"--run={run}", f"--models-dir={models}", "--name=plus"]) == 0
    assert main(["export-tflite", f"--run={run}", f"--out={tmp_path / 'plus.tflite'}"]) == 0
    assert main(["export-onnx", f"--run={run}", f"--out={tmp_path / 'plus.onnx'}"]) == 0
    printed = capsys.readouterr().out
    # Each export printed its verification (it writes nothing when the answers disagree).
    assert printed.count("all checks:") >= 2 and "failed" not in printed

    for name in ("plus.tflite", "plus.onnx"):  # verified in TFLite's and ONNX Runtime's runner
        assert onboard.read_sidecar(tmp_path / name)["verification"]["agreement"] >= 0.999
    assert (models / "plus" / "1" / "saved_model.pb").is_file()
