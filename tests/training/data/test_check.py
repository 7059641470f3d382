import shutil

import numpy as np
import pytest
from PIL import Image

from training.data import voc
from training.data.check import DatasetError, check_root


def test_real_voc_sample_passes(voc_sample):
    report = check_root(voc_sample)
    assert report.ok, report.format()
    assert report.split_counts == {"train": 6, "val": 3}
    names = {voc.class_names[i] for i in np.flatnonzero(report.class_pixels[:21])}
    assert {"aeroplane", "person", "tvmonitor", "background"} <= names
    assert report.class_pixels[255] > 0
    text = report.format()
    assert "aeroplane" in text and "no problems found" in text


@pytest.fixture
def broken_root(voc_sample, tmp_path):
    """A copy of the real sample with one problem of each kind."""
    root = tmp_path / "voc"
    shutil.copytree(voc_sample, root, ignore=shutil.ignore_patterns("official", "*.csv"))
    voc.image_path(root, "2007_000032").unlink()  # missing image
    voc.mask_path(root, "2007_000039").unlink()  # missing mask
    Image.open(voc.mask_path(root, "2007_000063")).convert("RGB").save(
        voc.mask_path(root, "2007_000063")
    )  # RGB mask
    mask = voc.read_mask(voc.mask_path(root, "2007_000129"))
    mask[0, 0] = 42
    voc.write_mask(mask, voc.mask_path(root, "2007_000129"))  # out-of-range value
    voc.write_mask(np.zeros((10, 12), np.uint8), voc.mask_path(root, "2007_000256"))  # size
    data = voc.image_path(root, "2007_000738").read_bytes()
    voc.image_path(root, "2007_000738").write_bytes(data[: len(data) // 3])  # truncated JPEG
    return root


def test_every_problem_is_listed(broken_root):
    report = check_root(broken_root)
    problems = [str(p) for p in report.problems]
    assert len(problems) == 6, problems

    def find(sample_id):
        return next(p for p in problems if sample_id in p)

    assert "image missing" in find("2007_000032")
    assert "mask missing" in find("2007_000039")
    assert "expected P (palettized), got RGB" in find("2007_000063")
    assert "expected 0–20 and 255, got [42]" in find("2007_000129")
    assert "expected the image's 500x" in find("2007_000256") and "got 12x10" in find("2007_000256")
    assert "image unreadable" in find("2007_000738")
    with pytest.raises(DatasetError, match="6 problem"):
        report.raise_if_problems()


def test_missing_split_lists(tmp_path):
    report = check_root(tmp_path)
    assert not report.ok
    assert "no split lists" in str(report.problems[0])


def test_num_classes_narrows_allowed_values(voc_sample):
    report = check_root(voc_sample, num_classes=2, lists=["val"])
    assert not report.ok
    assert all("expected 0–1 and 255" in p.what for p in report.problems)


def test_a_split_list_that_repeats_ids_is_reported_and_its_samples_still_checked(broken_root):
    train = voc.split_list_path(broken_root, "train")
    ids = voc.read_split_list(voc.split_list_path(broken_root, "val"))
    train.write_text(train.read_text() + "\n".join(ids[:2] + ids[:1]) + "\n")
    report = check_root(broken_root)
    problems = [str(p) for p in report.problems]
    repeated = next(p for p in problems if "repeats" in p)
    assert repeated.startswith(f"{train}: split list repeats 1 id(s): {ids[0]} (lines ")
    assert len(problems) == 7, problems  # the six sample problems are still found
    assert report.split_counts["train"] == 6 + 2
