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


def test_synth_indoor_is_a_cvat_export_that_check_and_preview_accept(tmp_path):
    root = tmp_path / "indoor"
    result = run("synth", "--classes", "indoor", "--out", root, "--count", "6", "--seed", "1",
                 "--size", "96x72")  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = "background, floor, wall, furniture, person, pet, clutter"
    assert f"wrote 6 synthetic 96x72 samples ({names}) in CVAT's layout" in result.stdout
    assert [p.name for p in (root / voc.SPLIT_DIR).iterdir()] == ["default.txt"]

    result = run("check", "--root", root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "split default" in result.stdout and "no problems found" in result.stdout
    for name in ("floor", "wall", "furniture", "person", "pet", "clutter"):
        assert f" {name} " in result.stdout, name

    out = tmp_path / "grid.png"
    result = run("preview", "--root", root, "--count", "2", "--input-size", "64x48", "--out", out)
    assert result.returncode == 0, result.stderr
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert (pixels == (128, 64, 128)).all(-1).any(), "the floor in the labelmap's colour"

    result = run("synth", "--classes", "indoor", "--out", tmp_path / "x", "--val-fraction", "0.3")
    assert result.returncode == 1 and "--val-fraction is for VOC's layout" in result.stderr


def test_check_names_a_bad_labelmap_line_and_an_unknown_colour(tmp_path):
    root = tmp_path / "indoor"
    assert run("synth", "--classes", "indoor", "--out", root, "--count", "3").returncode == 0
    labelmap = root / "labelmap.txt"
    labelmap.write_text(labelmap.read_text().replace("pet:250,170,30::", "pet:250,170::"))
    result = run("check", "--root", root)
    assert result.returncode == 1
    assert f"{labelmap}: line 7: expected 'name:R,G,B::'" in result.stdout
    labelmap.write_text(labelmap.read_text().replace("pet:250,170::", "pet:250,171,30::"))
    result = run("check", "--root", root)
    assert result.returncode == 1
    assert "colour(s) not in the labelmap: (250, 170, 30) ×" in result.stdout


def test_synth_from_a_labelmap_file(tmp_path):
    labelmap = tmp_path / "labelmap.txt"
    labelmap.write_text("background:0,0,0::\nfloor:10,200,10::\ndog:200,10,10::\n")
    root = tmp_path / "own"
    result = run("synth", "--labelmap", labelmap, "--out", root, "--count", "3", "--size", "64x48")
    assert result.returncode == 0, result.stderr
    assert (root / "labelmap.txt").read_text().endswith("dog:200,10,10::\n")
    result = run("check", "--root", root)
    assert result.returncode == 0 and " dog " in result.stdout, result.stdout
