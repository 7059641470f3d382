import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.training.data.roots import TINY, colours, ids_grid, palettized, write_root
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
    rgb = np.array(Image.open(voc.mask_path(root, "2007_000063")).convert("RGB"))
    rgb[3:5, 7:10] = (1, 2, 3)  # an RGB mask (fine: VOC's colours) with a colour VOC lacks
    Image.fromarray(rgb).save(voc.mask_path(root, "2007_000063"))
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
    assert "1 colour(s) not in the labelmap: (1, 2, 3) × 6 px (first at row 3, col 7)" in find(
        "2007_000063"
    )
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


def test_a_cvat_export_is_checked_as_it_is_with_its_own_names(indoor_root):
    report = check_root(indoor_root)
    assert report.ok, report.format()
    assert report.split_counts == {"default": 12}
    text = report.format()
    for name in ("background", "floor", "wall", "furniture", "person", "pet", "clutter"):
        assert re.search(rf"^\s+\d+ {name}\s+\d+", text, re.M), name
    assert report.class_pixels[1] > 0 and report.class_pixels[2] > 0  # floor and wall


def _bad_cvat_root(tmp_path):
    """A CVAT-layout root with one problem of each kind (and one good sample)."""
    ids = ids_grid()
    unknown = np.asarray(colours(ids)).copy()
    unknown[1:3, 5] = (200, 0, 0)
    too_big = ids.copy()
    too_big[2, 2] = 9
    root = write_root(
        tmp_path / "cvat",
        {
            "good": colours(ids),
            "unknown_colour": Image.fromarray(unknown),
            "id_too_big": Image.fromarray(too_big, mode="L"),
            "other_size": colours(ids_grid(5, 8)),
            "no_files": colours(ids),
            "png_frame": palettized(ids, TINY.palette()),
        },
    )
    (root / "JPEGImages" / "png_frame.jpg").rename(root / "JPEGImages" / "png_frame.png")
    image = Image.open(root / "JPEGImages" / "good.jpg")
    image.resize((8, 6)).save(root / "JPEGImages" / "other_size.jpg")
    (root / "JPEGImages" / "no_files.jpg").unlink()
    voc.mask_path(root, "no_files").unlink()
    lists = voc.split_list_path(root, "default")
    lists.write_text(lists.read_text() + "good\n")
    return root


def test_every_problem_of_a_cvat_root_is_named(tmp_path):
    root = _bad_cvat_root(tmp_path)
    repeats, other_size, no_image, no_mask = (
        f"{root}/ImageSets/Segmentation/default.txt: split list repeats 1 id(s): good "
        "(lines 1, 7); list each id once",
        f"{root}/SegmentationClass/other_size.png: size: expected the image's 8x6, got 8x5",
        f"{root}/JPEGImages/no_files.jpg: image missing for id 'no_files': looked for "
        "no_files.jpg, no_files.jpeg, no_files.png, no_files.JPG, no_files.JPEG, no_files.PNG",
        f"{root}/SegmentationClass/no_files.png: mask missing (id 'no_files')",
    )
    (root / "labelmap.txt").write_text(TINY.to_text() + "rug:1,2::\n")
    problems = [str(p) for p in check_root(root).problems]
    assert problems == [  # a labelmap that does not parse: files and sizes are still checked
        f"{root}/labelmap.txt: line 5: expected 'name:R,G,B::' (CVAT's labelmap, R,G,B in "
        "0..255), got 'rug:1,2::'",
        repeats,
        other_size,
        no_image,
        no_mask,
    ]
    (root / "labelmap.txt").write_text(TINY.to_text())
    problems = [str(p) for p in check_root(root).problems]
    assert problems[0] == repeats and problems[3:] == [other_size, no_image, no_mask]
    assert problems[1].startswith(
        f"{root}/SegmentationClass/unknown_colour.png: 1 colour(s) not in the labelmap: "
        "(200, 0, 0) × 2 px (first at row 1, col 5); known: background (0, 0, 0), "
    )
    assert problems[2] == (
        f"{root}/SegmentationClass/id_too_big.png: mask values: expected 0–2 and 255, "
        "got [9] (9 × 1 px)"
    )


def test_a_num_classes_other_than_the_labelmaps_is_a_problem(indoor_root):
    report = check_root(indoor_root, num_classes=21)
    assert [p.what for p in report.problems] == [
        "names 7 classes (background, floor, wall, furniture, person, pet, clutter), but "
        "num_classes is 21; leave num_classes out to use the labelmap's"
    ]
    assert report.num_classes == 7
