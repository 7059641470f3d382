import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client.overlay import draw_legend, overlay, present_classes, side_by_side
from client.palette import VOC_CLASS_NAMES, voc_colormap

PERSON, AEROPLANE = 15, 1  # VOC RGB (192, 128, 128) and (128, 0, 0)


def _scene(h: int = 8, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = (100, 40, 200)  # B, G, R
    class_map = np.zeros((h, w), np.uint8)
    class_map[2:5, 3:6] = PERSON
    return frame, class_map


def test_blend_matches_hand_computed_pixel():
    frame, class_map = _scene()
    out = overlay(frame, class_map, alpha=0.25)
    # Person in BGR is (128, 128, 192); 0.75 * frame + 0.25 * colour, channel by channel:
    # 75 + 32, 30 + 32, 150 + 48.
    assert out[3, 4].tolist() == [107, 62, 198]
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_background_stays_untouched_unless_disabled():
    frame, class_map = _scene()
    out = overlay(frame, class_map, alpha=0.25)
    np.testing.assert_array_equal(out[class_map == 0], frame[class_map == 0])
    everything = overlay(frame, class_map, alpha=0.25, background=None)
    assert everything[0, 0].tolist() == [75, 30, 150]  # blended with black (class 0)


def test_alpha_extremes():
    frame, class_map = _scene()
    np.testing.assert_array_equal(overlay(frame, class_map, alpha=0.0), frame)
    full = overlay(frame, class_map, alpha=1.0)
    assert full[3, 4].tolist() == [128, 128, 192]


def test_bgr_and_rgb_color_order():
    frame = np.zeros((2, 2, 3), np.uint8)
    class_map = np.full((2, 2), AEROPLANE, np.uint8)
    bgr = overlay(frame, class_map, alpha=1.0, color="bgr")
    rgb = overlay(frame, class_map, alpha=1.0, color="rgb")
    assert bgr[0, 0].tolist() == [0, 0, 128]  # red lives in channel 2 of a BGR image
    assert rgb[0, 0].tolist() == [128, 0, 0]


def test_custom_palette_is_rgb():
    palette = np.array([[0, 0, 0], [10, 20, 30]], np.uint8)
    frame = np.zeros((1, 1, 3), np.uint8)
    out = overlay(frame, np.ones((1, 1), np.uint8), alpha=1.0, palette=palette)
    assert out[0, 0].tolist() == [30, 20, 10]


def test_overlay_does_not_modify_the_frame():
    frame, class_map = _scene()
    before = frame.copy()
    overlay(frame, class_map)
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize(
    ("frame", "class_map", "kwargs", "message"),
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), {}, r"H×W×3 uint8.*\(4, 4\)"),
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), {}, "uint8.*float32"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8), {}, r"\(4, 4\).*\(4, 5\)"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), {}, "integer.*float32"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), {"alpha": 1.5}, "1.5"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), {"color": "hsv"}, "'hsv'"),
        (
            np.zeros((4, 4, 3), np.uint8),
            np.zeros((4, 4), np.uint8),
            {"palette": np.zeros((3, 4), np.uint8)},
            r"\[C,3\].*\(3, 4\)",
        ),
    ],
)
def test_overlay_rejects_bad_inputs(frame, class_map, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlay(frame, class_map, **kwargs)


def test_present_classes():
    class_map = np.array([[0, 15], [7, 15]], np.uint8)
    assert present_classes(class_map) == [7, 15]
    assert present_classes(class_map, ignore=()) == [0, 7, 15]
    assert present_classes(np.zeros((3, 3), np.uint8)) == []


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_legend_draws_in_the_corner_only():
    image = np.full((240, 320, 3), 200, np.uint8)
    out = draw_legend(image, [PERSON], VOC_CLASS_NAMES)
    changed = _changed(image, out)
    assert changed[:10, :10].all(), "the top-left corner holds the legend"
    rows, cols = np.nonzero(changed)
    assert rows.max() < 240 // 4 and cols.max() < 320 // 2
    np.testing.assert_array_equal(out[120:], image[120:])
    # The person swatch is drawn in BGR; the name is light text on the dark box.
    assert np.all(out == (128, 128, 192), axis=2).sum() > 20
    legend = out[: rows.max() + 1, : cols.max() + 1]
    assert (legend.min(axis=2) > 150).sum() > 20
    assert (image == 200).all(), "the input is not drawn on"


def test_legend_has_one_row_per_class_and_rgb_swatches():
    image = np.full((240, 320, 3), 200, np.uint8)
    one = np.nonzero(_changed(image, draw_legend(image, [PERSON], VOC_CLASS_NAMES)))[0].max()
    two = draw_legend(image, [AEROPLANE, PERSON], VOC_CLASS_NAMES, color="rgb")
    assert np.nonzero(_changed(image, two))[0].max() > 1.5 * one
    assert np.all(two == (128, 0, 0), axis=2).sum() > 20  # aeroplane swatch, RGB order


def test_legend_scales_with_image_height():
    small = np.zeros((240, 320, 3), np.uint8)
    large = np.zeros((1080, 1920, 3), np.uint8)
    height = {
        len(img): np.nonzero(_changed(img, draw_legend(img, [PERSON], VOC_CLASS_NAMES)))[0].max()
        for img in (small, large)
    }
    assert height[1080] > 2 * height[240]


def test_legend_without_classes_is_an_unchanged_copy():
    image = np.full((20, 20, 3), 7, np.uint8)
    out = draw_legend(image, [], VOC_CLASS_NAMES)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_legend_rejects_unknown_ids():
    with pytest.raises(ValueError, match="class id 21 has no name or colour: 21 names"):
        draw_legend(np.zeros((20, 20, 3), np.uint8), [21], VOC_CLASS_NAMES)


def test_side_by_side_same_height():
    left = np.zeros((4, 3, 3), np.uint8)
    right = np.full((4, 5, 3), 9, np.uint8)
    both = side_by_side(left, right)
    assert both.shape == (4, 8, 3)
    np.testing.assert_array_equal(both[:, 3:], right)


def test_side_by_side_resizes_right_keeping_its_aspect():
    left = np.zeros((100, 50, 3), np.uint8)
    right = np.full((50, 80, 3), 9, np.uint8)
    both = side_by_side(left, right)
    assert both.shape == (100, 50 + 160, 3)
    assert (both[:, 50:] == 9).all()


def test_side_by_side_rejects_mismatched_images():
    with pytest.raises(ValueError, match="same dtype and channels"):
        side_by_side(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        side_by_side(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32))


def test_overlay_and_navigation_import_without_tensorflow():
    code = (
        "import sys, client.overlay, client.navigation; "
        "assert 'tensorflow' not in sys.modules, 'client pulled in TensorFlow'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_voc_colormap_sanity_for_these_tests():
    # The expected colours above are the VOC ones; a palette change must show up here first.
    assert voc_colormap()[PERSON].tolist() == [192, 128, 128]
    assert voc_colormap()[AEROPLANE].tolist() == [128, 0, 0]
