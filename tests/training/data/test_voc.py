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
    with pytest.raises(ValueError, match=re.escape("(1, 2, 3) × 1 px (first at row 2, col 1)")):
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


def _single_list_root(tmp_path, ids, name="default"):
    (tmp_path / voc.SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    voc.split_list_path(tmp_path, name).write_text("\n".join(ids) + "\n")
    return tmp_path


def test_a_single_list_is_split_by_seed_into_disjoint_covering_parts(tmp_path):
    ids = [f"frame_{i:06d}" for i in range(100)]
    root = _single_list_root(tmp_path, ids)
    parts = {split: voc.resolve_split(root, split) for split in ("train", "val", "test")}
    sizes = [len(parts[s]) for s in ("train", "val", "test")]
    assert abs(sizes[0] - 70) <= 6 and abs(sizes[1] - 15) <= 6 and abs(sizes[2] - 15) <= 6
    assert voc.DEFAULT_VAL_FRACTION == voc.DEFAULT_TEST_FRACTION == 0.15
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == ids
    for split, members in parts.items():
        assert members == [i for i in ids if i in set(members)], f"{split}: in list order"
    assert voc.resolve_split(root, "val") == parts["val"]  # deterministic
    assert voc.resolve_split(root, "val", seed=1) != parts["val"]
    assert voc.resolve_split(root, "default") == ids  # the list by its own name: all of it
    sizes = [
        len(voc.resolve_split(root, s, val_fraction=0.2, test_fraction=0.1))
        for s in ("train", "val", "test")
    ]
    assert abs(sizes[0] - 70) <= 6 and abs(sizes[1] - 20) <= 6 and abs(sizes[2] - 10) <= 6


def test_the_single_list_split_depends_on_the_ids_not_their_order_or_number(tmp_path):
    ids = [f"frame_{i:06d}" for i in range(200)]
    parts = voc.split_single_list(ids)
    assert voc.split_single_list(ids[::-1])["test"] == parts["test"][::-1]
    for added in (1, 20, 400):  # adding frames moves no frame already listed
        grown = voc.split_single_list(ids + [f"new_{i}" for i in range(added)])
        for name, members in parts.items():
            assert set(members) <= set(grown[name]), f"{added} added: {name} changed"


def test_three_ids_give_one_each_and_fewer_are_named(tmp_path):
    parts = voc.split_single_list(["a", "b", "c"])
    assert sorted(map(len, parts.values())) == [1, 1, 1]
    assert sorted(i for part in parts.values() for i in part) == ["a", "b", "c"]
    root = _single_list_root(tmp_path, ["a", "b"])
    with pytest.raises(ValueError, match=r"default.txt: 2 id\(s\) cannot be split .* at least 3"):
        voc.resolve_split(root, "train")
    without_test = voc.split_single_list(["a", "b"], test_fraction=0)
    assert [len(without_test[s]) for s in ("train", "val", "test")] == [1, 1, 0]
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction must be below 1"):
        voc.split_single_list(["a", "b", "c"], val_fraction=0.5, test_fraction=0.5)


def test_a_lone_train_list_is_not_split_silently(tmp_path):
    root = _single_list_root(tmp_path, ["a", "b", "c"], name="train")
    assert voc.resolve_split(root, "train") == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match=r"val.txt does not exist \(lists here: "
                       r"train.txt\); to split train.txt .* rename it default.txt"):  # fmt: skip
        voc.resolve_split(root, "val")


def test_a_labelled_test_list_beside_val_is_read_as_it_is(official_root):
    halves = [voc.resolve_split(official_root, s) for s in ("val", "test")]
    # VOC's test download adds a test.txt with no masks: the book's halves stay.
    voc.split_list_path(official_root, "test").write_text("x\ny\n")
    assert [voc.resolve_split(official_root, s) for s in ("val", "test")] == halves
    for sample_id in ("x", "y"):  # an export whose test list is labelled: read as it is
        voc.write_mask(np.zeros((2, 2), np.uint8), voc.mask_path(official_root, sample_id))
    assert voc.resolve_split(official_root, "test") == ["x", "y"]
    assert voc.resolve_split(official_root, "val") == voc.read_split_list(
        voc.split_list_path(official_root, "val")
    )


def test_images_are_found_as_jpeg_then_png(tmp_path):
    (tmp_path / voc.IMAGE_DIR).mkdir()
    assert voc.image_path(tmp_path, "a") == tmp_path / voc.IMAGE_DIR / "a.jpg"
    (tmp_path / voc.IMAGE_DIR / "a.png").write_bytes(b"")
    assert voc.find_image(tmp_path, "a") == tmp_path / voc.IMAGE_DIR / "a.png"
    (tmp_path / voc.IMAGE_DIR / "a.jpg").write_bytes(b"")
    assert voc.find_image(tmp_path, "a") == tmp_path / voc.IMAGE_DIR / "a.jpg"
    with pytest.raises(FileNotFoundError) as raised:
        voc.find_image(tmp_path, "b")
    assert str(raised.value) == (
        f"{tmp_path / voc.IMAGE_DIR}: image missing for id 'b': looked for b.jpg, b.jpeg, "
        "b.png, b.JPG, b.JPEG, b.PNG"
    )
