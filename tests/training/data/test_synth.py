import numpy as np
import pytest
from PIL import Image

from training.data import voc
from training.data.check import check_root
from training.data.labelmap import Labelmap, read_labelmap
from training.data.synth import INDOOR_LABELMAP, write_synthetic_cvat, write_synthetic_voc


def test_layout_and_check(synth_root):
    assert len(voc.read_split_list(voc.split_list_path(synth_root, "train"))) == 12
    assert len(voc.read_split_list(voc.split_list_path(synth_root, "val"))) == 4
    assert len(voc.read_split_list(voc.split_list_path(synth_root, "trainval"))) == 16
    report = check_root(synth_root)
    assert report.ok, report.format()
    with Image.open(voc.image_path(synth_root, "synth_000000")) as image:
        assert image.format == "JPEG" and image.size == (160, 120)
    with Image.open(voc.mask_path(synth_root, "synth_000000")) as mask:
        assert mask.mode == "P"


def test_scenes_are_a_real_task(synth_root):
    ids = voc.read_split_list(voc.split_list_path(synth_root, "trainval"))
    masks = [voc.read_mask(voc.mask_path(synth_root, i)) for i in ids]
    classes = set(np.unique(np.concatenate([m.ravel() for m in masks]))) - {0, 255}
    assert len(classes) >= 4, f"only classes {classes}"
    assert sum(len(set(np.unique(m)) - {0, 255}) >= 2 for m in masks) >= len(masks) // 2
    for sample_id, mask in zip(ids, masks, strict=True):
        image = np.asarray(Image.open(voc.image_path(synth_root, sample_id)), np.float32)
        assert image.std() > 15, "background must not be flat"
        objects = (mask > 0) & (mask < 255)
        if objects.any():
            # 255 marks a band between every object and what surrounds it, as in VOC.
            assert (mask == 255).any()
            padded = np.pad(mask, 1, constant_values=255)
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                neighbour = padded[1 + dy : 1 + dy + mask.shape[0], 1 + dx : 1 + dx + mask.shape[1]]
                touching = objects & (neighbour != mask) & (neighbour != 255)
                assert not touching.any(), "object pixels must not touch another label directly"


def test_deterministic_and_independent_of_count(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", count=3, seed=5, size=(96, 64))
    b = write_synthetic_voc(tmp_path / "b", count=5, seed=5, size=(96, 64))
    c = write_synthetic_voc(tmp_path / "c", count=3, seed=6, size=(96, 64))
    for i in range(3):
        sample_id = f"synth_{i:06d}"
        assert (
            voc.image_path(a, sample_id).read_bytes() == voc.image_path(b, sample_id).read_bytes()
        )
        assert voc.mask_path(a, sample_id).read_bytes() == voc.mask_path(b, sample_id).read_bytes()
    assert (
        voc.image_path(a, "synth_000000").read_bytes()
        != voc.image_path(c, "synth_000000").read_bytes()
    )


def test_unknown_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"no synthetic style for \['sheep'\]"):
        write_synthetic_voc(tmp_path, count=2, classes=["person", "sheep"])


def test_indoor_world_is_written_exactly_as_cvat_exports(indoor_root):
    assert sorted(p.name for p in indoor_root.iterdir()) == [
        "ImageSets",
        "JPEGImages",
        "SegmentationClass",
        "labelmap.txt",
    ]
    assert [p.name for p in (indoor_root / voc.SPLIT_DIR).iterdir()] == ["default.txt"]
    assert (indoor_root / "labelmap.txt").read_text().splitlines()[:3] == [
        "# label:color_rgb:parts:actions",
        "background:0,0,0::",
        "floor:128,64,128::",
    ]
    labelmap = read_labelmap(indoor_root / "labelmap.txt")
    assert labelmap == INDOOR_LABELMAP
    assert len(set(labelmap.names) - set(voc.class_names)) >= 5
    ids = voc.read_split_list(voc.split_list_path(indoor_root, "default"))
    assert len(ids) == 12
    with Image.open(voc.image_path(indoor_root, ids[0])) as image:
        assert image.format == "JPEG" and image.size == (96, 72)
    with Image.open(voc.mask_path(indoor_root, ids[0])) as mask:
        assert mask.mode == "RGB"
    assert check_root(indoor_root).ok


def test_indoor_scenes_stand_on_the_floor_below_the_walls(indoor_root):
    labelmap = INDOOR_LABELMAP
    floor, wall = labelmap.names.index("floor"), labelmap.names.index("wall")
    seen = set()
    for sample_id in voc.read_split_list(voc.split_list_path(indoor_root, "default")):
        rgb = np.asarray(Image.open(voc.mask_path(indoor_root, sample_id)))
        label = labelmap.ids_of_colors(rgb)
        seen |= set(np.unique(label).tolist())
        assert (label[-1] == floor).mean() > 0.3, "the car drives on the floor"
        assert (label[0] == wall).mean() > 0.3 or (label[0] == 0).any(), "walls at the top"
        assert not (label[: label.shape[0] // 4] == floor).any(), "no floor near the top"
        assert 255 not in label, "CVAT's masks have no ignore band"
    assert seen == set(range(labelmap.num_classes)), f"classes seen: {seen}"


def test_indoor_is_deterministic_by_seed(tmp_path):
    a = write_synthetic_cvat(tmp_path / "a", count=3, seed=5, size=(64, 48))
    b = write_synthetic_cvat(tmp_path / "b", count=4, seed=5, size=(64, 48))
    c = write_synthetic_cvat(tmp_path / "c", count=3, seed=6, size=(64, 48))
    for name in ("JPEGImages/frame_000002.jpg", "SegmentationClass/frame_000002.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "JPEGImages/frame_000000.jpg").read_bytes() != (
        c / "JPEGImages/frame_000000.jpg"
    ).read_bytes()


def test_a_labelmap_names_the_classes_drawn(tmp_path):
    own = Labelmap(
        ("background", "floor", "dog", "cat"), ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3))
    )
    root = write_synthetic_cvat(tmp_path / "own", count=3, size=(64, 48), labelmap=own)
    assert read_labelmap(root / "labelmap.txt") == own
    assert check_root(root).ok  # walls are background here: the labelmap has no wall
    sheep = Labelmap(("background", "sheep"), ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ValueError, match=r"no synthetic style for \['sheep'\]; a labelmap"):
        write_synthetic_cvat(tmp_path / "x", count=3, labelmap=sheep)
    with pytest.raises(ValueError, match="at least 3"):
        write_synthetic_cvat(tmp_path / "y", count=2)
