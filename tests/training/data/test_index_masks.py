"""Index masks: palettized VOC masks converted once into single-channel PNGs of class ids."""

import os
import shutil

import cv2
import numpy as np
import pytest

from tests.training.data.roots import TINY, colours, ids_grid, write_root
from training.data import voc
from training.data.check import DatasetError
from training.data.index_masks import index_mask_path, prepare_index_masks
from training.data.labelmap import LABELMAP_FILE, Labelmap, write_labelmap
from training.data.pipeline import make_dataset


def test_index_masks_are_made_once_and_refreshed_when_the_source_changes(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    ids = voc.resolve_split(root, "train")
    index_dir = prepare_index_masks(root, ids, progress=False)
    assert index_dir == root / "SegmentationClassIndex"
    target = index_mask_path(index_dir, ids[0])
    np.testing.assert_array_equal(
        cv2.imread(str(target), cv2.IMREAD_UNCHANGED), voc.read_mask(voc.mask_path(root, ids[0]))
    )
    before = target.stat().st_mtime_ns
    prepare_index_masks(root, ids, progress=False)
    assert target.stat().st_mtime_ns == before
    # A replacement with an *older* mtime (tar -x, cp -p, rsync -a) is noticed too.
    new_mask = np.full_like(voc.read_mask(voc.mask_path(root, ids[0])), 7)
    old_mtime = voc.mask_path(root, ids[0]).stat().st_mtime_ns - 10**9
    voc.write_mask(new_mask, voc.mask_path(root, ids[0]))
    os.utime(voc.mask_path(root, ids[0]), ns=(old_mtime, old_mtime))
    prepare_index_masks(root, ids, progress=False)
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), new_mask)


def test_index_masks_are_checked_again_for_fewer_classes(synth_root, tmp_path):
    ids = voc.resolve_split(synth_root, "train")
    prepare_index_masks(synth_root, ids, tmp_path, progress=False)
    with pytest.raises(DatasetError, match="expected 0–1 and 255"):
        prepare_index_masks(synth_root, ids, tmp_path, num_classes=2, progress=False)
    with pytest.raises(DatasetError, match="expected 0–1 and 255"):
        make_dataset(synth_root, "train", batch_size=2, index_dir=tmp_path, num_classes=2)


def test_unreadable_manifest_means_convert_again(synth_root, tmp_path):
    ids = voc.resolve_split(synth_root, "train")
    prepare_index_masks(synth_root, ids, tmp_path, progress=False)
    (tmp_path / "manifest.json").write_text('{"num_classes": 21}')  # no "sources"
    before = index_mask_path(tmp_path, ids[0]).stat().st_mtime_ns
    prepare_index_masks(synth_root, ids, tmp_path, progress=False)
    assert index_mask_path(tmp_path, ids[0]).stat().st_mtime_ns > before


def test_colour_masks_are_converted_and_an_edited_labelmap_converts_them_again(tmp_path):
    ids = ids_grid()
    root = write_root(tmp_path / "cvat", {"a": colours(ids), "b": colours(ids[::-1])})
    index_dir = prepare_index_masks(root, ["a", "b"], progress=False)
    target = index_mask_path(index_dir, "a")
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), ids)
    before = target.stat().st_mtime_ns
    # Same classes written another way (comments, spacing): nothing to convert.
    (root / LABELMAP_FILE).write_text("# mine\n" + TINY.to_text().replace("::", ":: "))
    prepare_index_masks(root, ["a", "b"], progress=False)
    assert target.stat().st_mtime_ns == before
    # floor and wall swap ids (and colours with them: the masks' colours now read the other way)
    swapped = Labelmap(("background", "wall", "floor"), (TINY.colors[0], *TINY.colors[2:0:-1]))
    write_labelmap(swapped, root / LABELMAP_FILE)
    prepare_index_masks(root, ["a", "b"], progress=False)
    expected = np.choose(np.minimum(ids, 3), [0, 2, 1, 255]).astype(np.uint8)
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), expected)
