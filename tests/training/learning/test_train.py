"""Training end to end on a tiny configuration: it learns, it resumes after SIGKILL with the
same history, and evaluate/predict/model-info work on the run it leaves."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.learning.processes import (
    ENV,
    KILL_BEFORE_SAVING,
    REPO,
    TWO_CPUS_MIRRORED,
    read_log,
    train_command,
    train_in_subprocess,
)
from training.cli import main
from training.config import TrainConfig
from training.data import voc
from training.data.synth import write_synthetic_voc
from training.learning.resume import is_complete, truncate_csv_log
from training.learning.run_folder import RunFolder

# Small enough for CI on two cores, large enough to learn: MobileNetV2 from scratch at 96×96
# on a few synthetic scenes with two object classes, the train split doubling as val.
TINY = dict(
    epochs=6,
    batch_size=4,
    input_size=(96, 96),
    lr=3e-3,
    backbone="mobilenetv2",
    backbone_weights=None,
    bn_momentum=0.5,
    loss="ce",
    val_split="train",
    steps_per_epoch=10,
    early_stopping_patience=50,
    reduce_lr_patience=50,
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_synthetic_voc(
        tmp_path_factory.mktemp("tiny") / "voc",
        count=6,
        seed=1,
        size=(128, 96),
        classes=("person", "car"),
        val_fraction=0.2,
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_root, tmp_path_factory) -> RunFolder:
    from training.learning.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TrainConfig(data=str(tiny_root), out=str(out), **TINY), verbose=0)
    assert result.finished and not result.diverged
    return result.run


def test_tiny_configuration_learns(tiny_run):
    rows = read_log(tiny_run)
    assert [int(r["epoch"]) for r in rows] == list(range(TINY["epochs"]))
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert rows[-1]["val_mean_iou"] > 0.5
    assert max(r["val_mean_iou"] for r in rows) > rows[0]["val_mean_iou"] + 0.2


def test_the_run_folder_holds_what_is_needed_to_trace_and_reuse_it(tiny_run, tiny_root):
    config = json.loads(tiny_run.config.read_text())
    assert config["backbone"] == "mobilenetv2" and config["input_size"] == [96, 96]
    assert config["class_names"][15] == "person"
    assert "tensorflow" in config["versions"]
    train_ids = (tiny_run.splits / "train.txt").read_text().split()
    assert train_ids == (tiny_root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert tiny_run.best_weights.is_file()
    assert Image.open(tiny_run.curves).size[0] > 500
    state = json.loads((tiny_run.state / "state.json").read_text())
    assert state["epochs_done"] == TINY["epochs"] and state["finished"]
    assert list(tiny_run.tensorboard.rglob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def resume_root(tmp_path_factory) -> Path:
    """13 train images: 3 batches of 4 per pass, while a Keras epoch is 2 steps, so epochs
    end in the middle of a pass and a resumed stream must skip into it. The "plateau" list
    holds two copies whose masks are all 255: a validation loss that never improves, so
    ReduceLROnPlateau lowers the rate every other epoch and its counters must be restored."""
    root = write_synthetic_voc(
        tmp_path_factory.mktemp("resume") / "voc",
        count=16,
        seed=2,
        size=(96, 72),
        classes=("person", "car"),
        val_fraction=0.2,
    )
    plateau = []
    for source in voc.resolve_split(root, "train")[:2]:
        copy = f"plateau_{source}"
        shutil.copy(voc.image_path(root, source), voc.image_path(root, copy))
        voc.write_mask(np.full((72, 96), voc.IGNORE_LABEL, np.uint8), voc.mask_path(root, copy))
        plateau.append(copy)
    voc.split_list_path(root, "plateau").write_text("\n".join(plateau) + "\n")
    return root


def _train_args(root: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train",
        f"--data={root}",
        f"--out={out}",
        f"--epochs={epochs}",
        "--batch-size=4",
        "--input-size=64",
        "--lr=3e-3",
        "--backbone=mobilenetv2",
        "--backbone-weights=none",
        "--bn-momentum=0.5",
        "--loss=ce+dice",
        "--steps-per-epoch=2",
        "--val-split=plateau",
        "--reduce-lr-patience=1",  # so the learning rate changes and must be restored
        "--keras-verbose=0",
    ]


@pytest.fixture(scope="module")
def reference_log(resume_root, tmp_path_factory) -> list[dict[str, float]]:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = train_in_subprocess(_train_args(resume_root, out, RESUME_EPOCHS))
    assert done.returncode == 0, done.stderr[-3000:]
    return read_log(RunFolder(out))


RESUME_EPOCHS = 4


def _assert_same_history(expected, got):
    assert [r["epoch"] for r in got] == list(range(RESUME_EPOCHS))
    for want, have in zip(expected, got, strict=True):
        assert want.keys() == have.keys()
        for key in want:
            assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, want["epoch"])
    assert any(r["learning_rate"] < 3e-3 for r in got)  # the plateau schedule was exercised


def test_a_run_killed_at_a_random_moment_resumes_with_the_same_history(
    resume_root, reference_log, tmp_path
):
    out = tmp_path / "run"
    command = train_command(_train_args(resume_root, out, RESUME_EPOCHS))
    process = subprocess.Popen(
        command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = out / "log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:  # header + 1 epoch
            break
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    resumed = train_in_subprocess(_train_args(resume_root, out, RESUME_EPOCHS))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_history(reference_log, read_log(RunFolder(out)))


@pytest.mark.parametrize("epoch", [1, 3])
def test_a_run_killed_between_its_csv_row_and_its_state_resumes_with_the_same_history(
    resume_root, reference_log, tmp_path, epoch
):
    out = tmp_path / "run"
    args = _train_args(resume_root, out, RESUME_EPOCHS)
    killed = train_in_subprocess(args, before=KILL_BEFORE_SAVING.format(epoch=epoch))
    assert killed.returncode == -signal.SIGKILL
    assert len(read_log(RunFolder(out))) == epoch  # the row of the unsaved epoch is there

    resumed = train_in_subprocess(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_history(reference_log, read_log(RunFolder(out)))
    if epoch == 3:  # a finished run run again changes nothing
        before = RunFolder(out).log.read_text()
        again = train_in_subprocess(args)
        assert again.returncode == 0 and RunFolder(out).log.read_text() == before


def test_mirrored_strategy_and_mixed_precision_train_and_resume(resume_root, tmp_path):
    """Two logical CPUs stand in for two GPUs: the restore must happen in the strategy scope."""
    out = tmp_path / "run"
    setup = TWO_CPUS_MIRRORED
    for epochs in (1, 2):
        args = [*_train_args(resume_root, out, epochs), "--mixed-precision"]
        done = train_in_subprocess(args, before=setup)
        assert done.returncode == 0, done.stderr[-3000:]
    rows = read_log(RunFolder(out))
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_an_early_stopped_run_is_complete_until_its_target_grows():
    state = {"finished": True, "early_stopped": True, "epochs_done": 3, "epochs": 6}
    assert is_complete(state, 6) and is_complete(state, 5)
    assert not is_complete(state, 8)
    assert is_complete({**state, "early_stopped": False, "epochs_done": 6}, 6)
    assert not is_complete({**state, "finished": False}, 6)
    assert not is_complete(None, 6)


def test_csv_rows_of_an_unsaved_epoch_are_dropped_on_resume(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,1.0\n1,0.8\n2,0.7\n")
    truncate_csv_log(log, 2)
    assert log.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.8"]


def test_resuming_with_other_options_is_refused(tiny_run):
    from training.learning.train import train

    config = dataclasses.replace(tiny_run.read_config(), lr=0.5)
    with pytest.raises(ValueError, match=r"other options \(lr: 0\.003 → 0\.5\)"):
        train(config)


def test_a_split_smaller_than_a_batch_is_refused(tiny_root, tmp_path):
    from training.learning.train import train

    config = TrainConfig(data=str(tiny_root), out=str(tmp_path / "r"), **{**TINY, "batch_size": 64})
    with pytest.raises(ValueError, match="has 5 samples, fewer than --batch-size 64"):
        train(config)


def test_evaluate_scores_match_a_numpy_recount(tiny_run, tiny_root, capsys):
    from training.data.pipeline import make_dataset
    from training.learning.evaluate import evaluate_run

    report = evaluate_run(tiny_run.path, "train", batch_size=2)
    model = tiny_run.load_model()
    confusion = np.zeros((21, 21), np.int64)
    for images, labels in make_dataset(tiny_root, "train", batch_size=3, input_size=(96, 96)):
        predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
        valid = labels.numpy() != 255
        np.add.at(confusion, (labels.numpy()[valid], predicted[valid]), 1)
    with np.errstate(invalid="ignore"):  # classes that never occur: 0/0, skipped by nanmean
        iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert report.mean_iou == pytest.approx(np.nanmean(iou), abs=1e-6)
    assert report.pixel_accuracy == pytest.approx(np.trace(confusion) / confusion.sum())
    np.testing.assert_array_equal(report.confusion, confusion)

    # Full resolution with the book's stretch: the network sees what it saw in training.
    argv = ["evaluate", f"--run={tiny_run.path}", "--split=train", "--full-res", "--json"]
    assert main([*argv, "--resize=stretch"]) == 0
    out = capsys.readouterr().out
    assert "| mean IoU |" in out and "| person |" in out and "| aeroplane | — |" in out
    full = json.loads((tiny_run.evaluation / "train-full-res" / "metrics.json").read_text())
    assert full["full_res"] and full["images"] == 5 and full["resize"] == "stretch"
    assert full["mean_iou"] == pytest.approx(report.mean_iou, abs=0.15)  # same model, other sizes
    # The export's default keeps the aspect ratio (128×96 images → 64×96 network inputs).
    aspect = evaluate_run(tiny_run.path, "train", full_res=True)
    assert aspect.resize == "aspect" and 0 < aspect.mean_iou < 1
    assert aspect.mean_iou != pytest.approx(full["mean_iou"], abs=1e-6)
    assert main(["evaluate", f"--run={tiny_run.path}", "--resize=stretch"]) == 1
    assert "--resize applies to --full-res only" in capsys.readouterr().err
    for name in ("confusion.png", "predictions.png"):
        assert Image.open(tiny_run.evaluation / "train" / name).size[0] > 100


def test_evaluate_in_bfloat16_computes_in_bfloat16_and_says_so(tiny_run, capsys):
    from training.learning.evaluate import evaluate_run

    argv = ["evaluate", f"--run={tiny_run.path}", "--split=train", "--precision=bfloat16"]
    assert main(argv) == 0
    assert "in bfloat16" in capsys.readouterr().out
    scores = json.loads((tiny_run.evaluation / "train-bfloat16" / "metrics.json").read_text())
    assert scores["precision"] == "bfloat16"
    float32 = evaluate_run(tiny_run.path, "train")
    # bfloat16 keeps 8 bits of mantissa: close to float32, and not the float32 computation.
    assert scores["pixel_accuracy"] == pytest.approx(float32.pixel_accuracy, abs=0.05)
    assert scores["loss"] == pytest.approx(float32.loss, rel=0.05)
    assert scores["loss"] != float32.loss


def test_predict_writes_an_overlay_at_the_image_size(tiny_run, tiny_root, tmp_path, capsys):
    image = next((tiny_root / "JPEGImages").glob("*.jpg"))
    out = tmp_path / "overlay.png"
    assert main(["predict", f"--run={tiny_run.path}", f"--image={image}", f"--out={out}"]) == 0
    assert Image.open(out).size == Image.open(image).size
    assert "background" in capsys.readouterr().out

    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    argv = ["predict", f"--run={tiny_run.path}", f"--image={not_an_image}"]
    assert main([*argv, f"--out={tmp_path / 'x.png'}"]) == 1
    assert "notes.jpg: not a readable image" in capsys.readouterr().err
    assert main([*argv, "--out=x"]) == 1
    assert "--out x: expected a file ending in .png" in capsys.readouterr().err


def test_model_info_prints_the_table(capsys):
    assert main(["model-info", "--backbone", "mobilenetv2", "--input-size", "128"]) == 0
    assert "| mobilenetv2 | 16 | 128×128 | 4.6 M |" in capsys.readouterr().out


def test_offline_imagenet_weights_end_the_command_with_the_alternative(
    tiny_root, tmp_path, monkeypatch, capsys
):
    from training.model import backbones

    # A weights file no cache holds, at an address that refuses connections: offline, anywhere.
    unreachable = ("rcseg-test-missing.h5", "http://127.0.0.1:9/", None)
    monkeypatch.setitem(backbones.IMAGENET_FILES, "mobilenetv2", unreachable)
    argv = ["train", f"--data={tiny_root}", f"--out={tmp_path / 'r'}", "--batch-size=2"]
    argv.append("--backbone=mobilenetv2")
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "Is this machine offline?" in error and "--backbone-weights none" in error
