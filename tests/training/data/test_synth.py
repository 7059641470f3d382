import numpy as np
import pytest
from PIL import Image

from training.data import voc
from training.data.check import check_root
from training.data.synth import write_synthetic_voc


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
