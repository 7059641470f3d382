"""A dataset's classes from CVAT's labelmap.txt: every bad line named, colours looked up
exactly, unknown colours named with their pixel counts."""

import re

import numpy as np
import pytest

from training.data.labelmap import (
    Labelmap,
    LabelmapError,
    dataset_labelmap,
    match_colors,
    parse_labelmap,
    read_labelmap,
    write_labelmap,
)

CVAT_TEXT = """# label:color_rgb:parts:actions
background:0,0,0::
floor:128,64,128::
car:0,0,142:wheel,door:
"""


def test_cvat_text_parses_in_line_order_and_round_trips(tmp_path):
    labelmap = parse_labelmap(CVAT_TEXT)
    assert labelmap.names == ("background", "floor", "car")
    assert labelmap.colors == ((0, 0, 0), (128, 64, 128), (0, 0, 142))
    assert read_labelmap(write_labelmap(labelmap, tmp_path / "labelmap.txt")) == labelmap
    assert dataset_labelmap(tmp_path) == labelmap
    assert dataset_labelmap(tmp_path / "elsewhere") == Labelmap.voc()


def test_every_bad_line_is_named_with_its_number():
    bad = ["wall:1,2::", "floor:9,9,9::", "rug:0,0,142::", "border:224,224,192::", "x:1,2,300::"]
    text = CVAT_TEXT + "\n".join(bad) + "\n"
    with pytest.raises(LabelmapError) as raised:
        parse_labelmap(text, "export/labelmap.txt")
    assert raised.value.problems == [
        "line 5: expected 'name:R,G,B::' (CVAT's labelmap, R,G,B in 0..255), got 'wall:1,2::'",
        "line 6: name 'floor' is already on line 3",
        "line 7: colour (0, 0, 142) is already on line 4",
        "line 8: colour (224, 224, 192) is VOC's boundary colour, kept for 'ignore'; "
        "choose another",
        "line 9: expected 'name:R,G,B::' (CVAT's labelmap, R,G,B in 0..255), got 'x:1,2,300::'",
    ]
    assert str(raised.value).startswith("export/labelmap.txt: 5 problems: line 5: expected")


def test_one_bad_line_reads_as_file_and_line():
    with pytest.raises(LabelmapError, match=r"^labelmap.txt, line 2: expected 'name:R,G,B::'"):
        parse_labelmap("# header\nfloor\n")
    with pytest.raises(LabelmapError, match=r"^labelmap.txt: expected 1..255 classes, got 0"):
        parse_labelmap("# nothing but the header\n")


def test_colours_give_ids_and_the_boundary_colour_ignore():
    labelmap = parse_labelmap(CVAT_TEXT)
    rgb = np.array([[[0, 0, 0], [128, 64, 128]], [[224, 224, 192], [0, 0, 142]]], np.uint8)
    assert labelmap.ids_of_colors(rgb).tolist() == [[0, 1], [255, 2]]


def test_unknown_colours_are_named_most_pixels_first_with_counts_and_positions():
    labelmap = parse_labelmap(CVAT_TEXT)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (9, 9, 9)
    rgb[3, 1:] = (7, 7, 7)
    with pytest.raises(ValueError) as raised:
        labelmap.ids_of_colors(rgb, where="SegmentationClass/a.png")
    assert str(raised.value) == (
        "SegmentationClass/a.png: 2 colour(s) not in the labelmap: "
        "(7, 7, 7) × 4 px (first at row 3, col 1), (9, 9, 9) × 1 px (first at row 1, col 2); "
        "known: background (0, 0, 0), floor (128, 64, 128), car (0, 0, 142)"
    )


def test_match_colors_is_the_lookup_of_any_palette():
    rgb = np.array([[[5, 5, 5], [1, 1, 1]]], np.uint8)
    assert match_colors(rgb, [(1, 1, 1), (5, 5, 5)], [10, 20]).tolist() == [[20, 10]]
    with pytest.raises(ValueError, match=re.escape("m.png: 1 colour(s) not in the labelmap")):
        match_colors(rgb, [(1, 1, 1)], [0], where="m.png")


def test_a_labelmap_is_utf8_with_or_without_a_bom(tmp_path):
    path = tmp_path / "labelmap.txt"
    path.write_bytes(
        "\ufeff# label:color_rgb:parts:actions\nsol:1,2,3::\nchaise_été:4,5,6::\n".encode()
    )
    assert read_labelmap(path).names == ("sol", "chaise_été")
    write_labelmap(read_labelmap(path), tmp_path / "again.txt")
    assert "chaise_été" in (tmp_path / "again.txt").read_bytes().decode("utf-8")
