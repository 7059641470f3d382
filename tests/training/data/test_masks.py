"""Masks in every common form (palettized, index, colour) give the same class ids through
the dataset's labelmap; anything else is an error naming the file and the value."""

import numpy as np
import pytest
from PIL import Image

from tests.training.data.roots import TINY, colours, ids_grid, palettized, write_root
from training.data.labelmap import LABELMAP_FILE, Labelmap, LabelmapError
from training.data.masks import MaskError, dataset_classes, read_class_ids


def _save(tmp_path, image, name="m.png"):
    path = tmp_path / name
    image.save(path)
    return path


def test_every_form_gives_the_same_ids(tmp_path):
    ids = ids_grid()
    rgba = np.dstack([TINY.palette()[ids], np.full(ids.shape, 255, np.uint8)])
    forms = {
        "P": palettized(ids, TINY.palette()),
        "L": Image.fromarray(ids, mode="L"),
        "I;16": Image.fromarray(ids.astype(np.uint16)),
        "RGB": colours(ids),
        "RGBA": Image.fromarray(rgba, mode="RGBA"),
    }
    for mode, image in forms.items():
        read = read_class_ids(_save(tmp_path, image, f"{mode}.png"), TINY)
        np.testing.assert_array_equal(read, ids, err_msg=mode)


def test_a_colour_not_in_the_labelmap_names_the_file_colour_and_pixels(tmp_path):
    rgb = np.asarray(colours(ids_grid())).copy()
    rgb[2:4, 1] = (200, 0, 0)
    path = _save(tmp_path, Image.fromarray(rgb))
    with pytest.raises(ValueError, match=r"m.png: 1 colour\(s\) not in the labelmap: "
                       r"\(200, 0, 0\) × 2 px \(first at row 2, col 1\)"):  # fmt: skip
        read_class_ids(path, TINY)


def test_an_id_past_the_class_count_names_the_file_value_and_pixels(tmp_path):
    ids = ids_grid()
    ids[1, 1:4] = 7
    path = _save(tmp_path, Image.fromarray(ids, mode="L"))
    with pytest.raises(MaskError) as raised:
        read_class_ids(path, TINY)
    assert raised.value.path == path
    assert raised.value.what == "mask values: expected 0–2 and 255, got [7] (7 × 3 px)"


def test_transparency_and_other_modes_are_refused(tmp_path):
    rgba = np.dstack([TINY.palette()[ids_grid()], np.full((6, 8), 255, np.uint8)])
    rgba[5, 7, 3] = 0
    with pytest.raises(MaskError, match=r"transparency: 1 px with alpha below 255"):
        read_class_ids(_save(tmp_path, Image.fromarray(rgba, mode="RGBA")), TINY)
    with pytest.raises(MaskError, match="got CMYK"):
        read_class_ids(_save(tmp_path, Image.new("CMYK", (4, 4)), "m.tif"), TINY)


def test_a_reindexed_palette_is_read_by_its_colours(tmp_path):
    """An editor's "indexed" mode orders the palette by use: the colours are the truth."""
    ids = ids_grid()
    order = np.array([2, 0, 1])  # class k is written as index position of k in ``order``
    indices = np.argsort(order).astype(np.uint8)[np.minimum(ids, 2)]
    indices[ids == 255] = 255
    palette = np.zeros((256, 3), np.uint8)
    palette[:3] = np.array(TINY.colors)[order]
    read = read_class_ids(_save(tmp_path, palettized(indices, palette)), TINY)
    np.testing.assert_array_equal(read, ids)


def test_a_palette_neither_the_labelmaps_nor_of_its_colours_is_refused(tmp_path):
    palette = Labelmap.voc().palette()  # VOC's colours at indices 1 and 2: not TINY's
    with pytest.raises(MaskError, match=r"index 1 \(128, 0, 0\) × 12 px, index 2 \(0, 128, 0\)"):
        read_class_ids(_save(tmp_path, palettized(ids_grid(), palette)), TINY)


def test_in_a_voc_root_palettized_indices_are_ids_whatever_the_palette(tmp_path):
    palette = np.random.default_rng(0).integers(0, 255, (256, 3))
    path = _save(tmp_path, palettized(ids_grid(), palette))
    np.testing.assert_array_equal(read_class_ids(path, Labelmap.voc()), ids_grid())


def test_the_class_count_is_the_labelmaps(tmp_path):
    voc_root = write_root(tmp_path / "voc", {"a": colours(ids_grid())}, labelmap=None)
    assert dataset_classes(voc_root) == (Labelmap.voc(), 21)
    assert dataset_classes(voc_root, 5) == (Labelmap.voc(), 5)  # own data in VOC's layout
    root = write_root(tmp_path / "cvat", {"a": colours(ids_grid())})
    assert dataset_classes(root) == (TINY, 3)
    with pytest.raises(LabelmapError, match=f"{LABELMAP_FILE}: names 3 classes .* is 21"):
        dataset_classes(root, 21)
