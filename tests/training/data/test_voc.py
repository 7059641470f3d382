import random
import re

import numpy as np
import pytest
from PIL import Image

from training.data import voc


def _manifest(voc_sample):
    rows = (voc_sample / "manifest.csv").read_text().splitlines()[1:]
    return {row.split(",")[0]: row.split(",") for row in rows}


def test_read_mask_gives_class_ids_of_real_masks(voc_sample):
    for sample_id, row in _manifest(voc_sample).items():
        mask = voc.read_mask(voc.mask_path(voc_sample, sample_id))
        width, height = map(int, row[2].split("x"))
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        present = {voc.class_names[i] for i in np.unique(mask) if 0 < i < 255}
        assert present == set(row[3].split()), sample_id
        assert 255 in mask, "VOC masks carry a 255 border band"


def test_read_mask_uses_indices_not_rgb(voc_sample):
    mask_file = voc.mask_path(voc_sample, "2007_000032")
    rgb = np.asarray(Image.open(mask_file).convert("RGB"))
    np.testing.assert_array_equal(voc.rgb_to_mask(rgb), voc.read_mask(mask_file))


def test_read_mask_refuses_rgb(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ValueError, match=r"rgb.png: mask must be palettized .* got mode RGB"):
        voc.read_mask(path)


def test_write_mask_round_trip(tmp_path):
    mask = np.random.default_rng(0).choice([0, 3, 20, 255], size=(7, 9)).astype(np.uint8)
    path = tmp_path / "sub" / "m.png"
    voc.write_mask(mask, path)
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[:256], voc.voc_colormap())
    np.testing.assert_array_equal(voc.read_mask(path), mask)


def test_write_mask_rejects_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="2-D uint8"):
        voc.write_mask(np.zeros((2, 2), np.int32), tmp_path / "m.png")


def test_rgb_to_mask_vectorized_round_trip():
    mask = np.random.default_rng(1).integers(0, 256, size=(64, 48)).astype(np.uint8)
    np.testing.assert_array_equal(voc.rgb_to_mask(voc.voc_colormap()[mask]), mask)


def test_rgb_to_mask_names_unknown_colour():
    rgb = voc.voc_colormap()[np.zeros((3, 4), np.uint8)]
    rgb[2, 1] = (1, 2, 3)
    with pytest.raises(ValueError, match=re.escape("colour (1, 2, 3) at (row 2, col 1)")):
        voc.rgb_to_mask(rgb)


def test_rgb_to_mask_custom_palette():
    palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    rgb = np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)
    assert voc.rgb_to_mask(rgb, palette).tolist() == [[1, 0]]


@pytest.fixture
def official_root(voc_sample, tmp_path):
    split_dir = tmp_path / voc.SPLIT_DIR
    split_dir.mkdir(parents=True)
    for name in ("train", "val"):
        (split_dir / f"{name}.txt").write_text(
            (voc_sample / "official" / f"{name}.txt").read_text()
        )
    return tmp_path


def test_book_splits_from_official_lists(official_root):
    train = voc.resolve_split(official_root, "train")
    val = voc.resolve_split(official_root, "val")
    test = voc.resolve_split(official_root, "test")
    assert (len(train), len(val), len(test)) == (1464, 724, 725)
    assert not set(val) & set(test)
    assert set(val) | set(test) == set(
        voc.read_split_list(voc.split_list_path(official_root, "val"))
    )


def test_splits_ignore_global_random_state(official_root):
    random.seed(1)
    np.random.seed(1)
    first = voc.resolve_split(official_root, "val")
    random.seed(2)
    np.random.seed(2)
    assert voc.resolve_split(official_root, "val") == first
    assert voc.resolve_split(official_root, "val", seed=7) != first


def test_write_split_lists(official_root, tmp_path):
    written = voc.write_split_lists(official_root, tmp_path / "run" / "splits")
    for split, path in written.items():
        assert voc.read_split_list(path) == voc.resolve_split(official_root, split)


def test_missing_split_list_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train.txt does not exist"):
        voc.resolve_split(tmp_path, "train")


def test_a_split_list_that_repeats_ids_names_them_and_their_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a\nb\n\na\nc\nb\na\n")
    with pytest.raises(voc.RepeatedIdsError) as raised:
        voc.read_split_list(path)
    assert str(raised.value) == (
        f"{path}: split list repeats 2 id(s): a (lines 1, 4, 7); b (lines 2, 6); list each id once"
    )
    assert raised.value.ids == ["a", "b", "c"]
