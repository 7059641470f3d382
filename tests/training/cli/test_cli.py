"""The data commands as a user runs them: a real subprocess, real files, exit codes."""

import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from training.data import voc

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "training", "data", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
    )


def test_synth_check_prepare_preview(tmp_path):
    root = tmp_path / "voc"
    result = run(
        "synth",
        "--out",
        root,
        "--count",
        "6",
        "--seed",
        "1",
        "--size",
        "128x96",
        "--classes",
        "person,car,dog",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 6 synthetic 128x96 samples (person, car, dog)" in result.stdout

    result = run("check", "--root", root)
    assert result.returncode == 0, result.stderr
    assert "split train" in result.stdout and "person" in result.stdout
    assert "no problems found" in result.stdout

    result = run("prepare", "--root", root)
    assert result.returncode == 0, result.stderr
    assert len(list((root / "SegmentationClassIndex").glob("*.png"))) == 6
    result = run("prepare", "--root", root, "--num-classes", "2")
    assert result.returncode == 1 and "expected 0–1 and 255" in result.stderr

    out = tmp_path / "grid.png"
    result = run(
        "preview",
        "--root",
        root,
        "--split",
        "train",
        "--augment",
        "--count",
        "4",
        "--input-size",
        "96x64",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as grid:
        width, height = grid.size
    assert width >= 2 * 2 * 96 and height >= 2 * 64
    pixels = np.asarray(Image.open(out).convert("RGB"))
    person = voc.voc_colormap()[voc.class_names.index("person")]
    assert (pixels == person).all(-1).any() or (pixels == voc.voc_colormap()[7]).all(-1).any()


def test_check_lists_problems_and_exits_nonzero(voc_sample, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(voc_sample, root, ignore=shutil.ignore_patterns("official", "*.csv"))
    voc.mask_path(root, "2007_000033").unlink()
    result = run("check", "--root", root)
    assert result.returncode == 1
    assert "1 problem(s)" in result.stdout
    assert "2007_000033.png: mask missing" in result.stdout


def test_bad_arguments_are_named(tmp_path):
    result = run("synth", "--out", tmp_path, "--size", "big")
    assert result.returncode == 2
    assert "expected WIDTHxHEIGHT such as 480x360, got 'big'" in result.stderr
    result = run("prepare", "--root", tmp_path / "nowhere")
    assert result.returncode == 1
    assert "ImageSets/Segmentation does not exist: not a VOC-format root" in result.stderr


def test_train_names_the_ids_a_split_list_repeats(voc_sample, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(voc_sample, root, ignore=shutil.ignore_patterns("official", "*.csv"))
    train = voc.split_list_path(root, "train")
    first = voc.read_split_list(train)[0]
    train.write_text(train.read_text() + first + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "training", "train", "--preset", "smoke",
         "--data", str(root), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"split list repeats 1 id(s): {first} (lines 1, 7)" in result.stderr
