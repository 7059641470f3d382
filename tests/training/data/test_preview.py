"""Preview legends speak the dataset's classes: its names, its colours."""

import numpy as np

from training.data.labelmap import Labelmap
from training.data.preview import compose_grid, legend_entries, preview_grid
from training.data.synth import INDOOR_LABELMAP


def test_legend_entries_use_the_labelmaps_names_and_colours():
    assert legend_entries([1, 4, 255, 9], INDOOR_LABELMAP) == [
        (1, "floor", (128, 64, 128)),
        (4, "person", (220, 20, 60)),
        (255, "ignore (255)", (224, 224, 192)),
        (9, "class_9", tuple(Labelmap.voc().palette()[9].tolist())),
    ]
    assert legend_entries([15], Labelmap.voc()) == [(15, "person", (192, 128, 128))]


def _has_colour(picture, colour):
    return bool((picture == np.array(colour, np.uint8)).all(-1).any())


def test_a_preview_of_own_classes_is_in_their_colours(indoor_root, tmp_path):
    picture = preview_grid(indoor_root, "train", count=2, input_size=(48, 64), index_dir=tmp_path)
    floor = INDOOR_LABELMAP.colors[INDOOR_LABELMAP.names.index("floor")]
    assert _has_colour(picture, floor)
    assert not _has_colour(picture, Labelmap.voc().colors[1]), "VOC's colour of id 1"


def test_compose_grid_draws_the_legend_swatches_in_the_labelmaps_colours():
    tile = np.zeros((8, 8, 3), np.uint8)
    grid = compose_grid([[tile, tile]], columns=1, class_ids=[1, 2], labelmap=INDOOR_LABELMAP)
    for colour in INDOOR_LABELMAP.colors[1:3]:
        assert _has_colour(grid[8:], colour)
