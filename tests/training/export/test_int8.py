"""``export-tflite --optimize int8``: a full-integer network at a fixed size, the frame resized by
the runner, verified against the float32 model, with the onboard sidecar beside it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import write_random_run
from training.cli import main
from training.export import onboard, tflite

# The session's run is a few steps of training: many pixels are near-ties between classes,
# which int8 flips (one validation frame keeps 86 %). A trained model keeps ≥ 97 %
# (docs/performance.md); this one is held to 80 %.
SMOKE_FLOOR = "0.8"


def _argv(run, out, floor: str) -> list[str]:
    return ["export-tflite", f"--run={run.path}", f"--out={out}", "--optimize=int8",
            f"--min-agreement={floor}"]  # fmt: skip


def test_cli_exports_a_verified_int8_model_the_runner_resizes_for(trained_run, tmp_path, capsys):
    out = tmp_path / "deeplabv3.tflite"
    assert main(_argv(trained_run, out, SMOKE_FLOOR)) == 0
    printed = capsys.readouterr().out
    assert "all checks:" in printed and "passed" in printed and "int8 network at 48x64" in printed

    info = onboard.read_sidecar(out)
    assert info["format"] == onboard.SIDECAR_FORMAT and info["runtime"] == "tflite"
    assert info["resize_in"] == "runner" and info["network_size"] == [48, 64]
    assert info["inputs"]["images"] == {"dtype": "uint8", "shape": [1, 48, 64, 3],
                                        "layout": "NHWC RGB"}  # fmt: skip
    assert info["quantization"]["weights"] == "int8"
    assert info["class_names"] == trained_run.read_config().class_names
    assert info["verification"]["agreement"] >= float(SMOKE_FLOOR)

    segment, interpreter = tflite.tflite_runner(out.read_bytes())
    tensors = interpreter.get_tensor_details()
    # MobileNetV2's and DeepLab's convolution kernels (4-D), and the activations, are int8
    assert sum(t["dtype"] == np.int8 and len(t["shape"]) == 4 for t in tensors) > 50
    outputs = onboard.runner_resize(lambda p: segment(images=p), (48, 64))(
        np.zeros((1, 120, 160, 3), np.uint8)
    )
    assert outputs["class_map"].shape == (1, 120, 160)


def test_int8_that_fails_verification_writes_nothing(trained_run, tmp_path, capsys):
    out = tmp_path / "strict.tflite"
    assert main(_argv(trained_run, out, "1")) == 1
    assert f"nothing written to {out}" in capsys.readouterr().err
    assert not out.exists() and not onboard.sidecar_path(out).exists()


def test_bad_runs_and_paths_are_named_before_any_work(tmp_path, synth_root):
    run = write_random_run(tmp_path / "run", synth_root)
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match=r"notes\.txt is not a writable folder"):
        tflite.export_tflite(run.path, not_a_folder / "m.tflite")
    with pytest.raises(ValueError, match=r"\.tflite"):
        tflite.export_tflite(run.path, tmp_path / "m.onnx")
    run.best_weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"best\.weights\.h5"):
        tflite.export_tflite(run.path, tmp_path / "m.tflite", optimize="int8")
