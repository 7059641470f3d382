import numpy as np
import pytest
from PIL import Image

from client.palette import VOC_CLASS_NAMES, colorize, voc_colormap


def test_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]  # aeroplane
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # border
    assert len({tuple(c) for c in cmap}) == 256, "every id must have its own colour"


def test_colormap_equals_the_palette_of_real_voc_masks(voc_sample):
    for mask_file in sorted((voc_sample / "SegmentationClass").glob("*.png")):
        palette = np.array(Image.open(mask_file).getpalette(), np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette, voc_colormap()[: len(palette)])


def test_colormap_is_not_shared_mutable_state():
    voc_colormap()[1] = 0
    assert voc_colormap()[1].tolist() == [128, 0, 0]


def test_colorize():
    class_map = np.array([[0, 15], [255, 1]], np.uint8)
    rgb = colorize(class_map)
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [192, 128, 128] and rgb[1, 0].tolist() == [224, 224, 192]
    assert len(VOC_CLASS_NAMES) == 21


def test_colorize_id_outside_palette_is_a_clear_error():
    with pytest.raises(ValueError, match="id 5 but the palette has 3"):
        colorize(np.array([[5]], np.uint8), voc_colormap()[:3])
