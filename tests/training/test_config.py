"""TrainConfig takes its classes from the dataset: labelmap.txt, or VOC's."""

import pytest

from training.config import TrainConfig
from training.data.labelmap import LABELMAP_FILE, Labelmap, write_labelmap

FLOORS = Labelmap(("background", "floor", "wall"), ((0, 0, 0), (128, 64, 128), (102, 102, 156)))


def test_a_root_with_a_labelmap_gives_its_names_colours_and_count(tmp_path):
    write_labelmap(FLOORS, tmp_path / LABELMAP_FILE)
    config = TrainConfig(data=str(tmp_path), out="o")
    assert config.num_classes == 3 and config.class_names == list(FLOORS.names)
    assert config.palette == [list(c) for c in FLOORS.colors]
    assert config.classes() == FLOORS
    with pytest.raises(ValueError, match=r"names 3 classes \(background, floor, wall\)"):
        TrainConfig(data=str(tmp_path), out="o", num_classes=5)


def test_a_voc_root_keeps_vocs_classes_and_numbers_the_rest(tmp_path):
    voc = TrainConfig(data=str(tmp_path), out="o")
    assert voc.num_classes == 21 and voc.class_names[15] == "person"
    assert voc.palette[15] == [192, 128, 128]
    wider = TrainConfig(data=str(tmp_path), out="o", num_classes=23)
    assert wider.class_names[-2:] == ["class_21", "class_22"] and len(wider.palette) == 23


def test_a_saved_runs_classes_are_taken_as_recorded(tmp_path):
    write_labelmap(FLOORS, tmp_path / LABELMAP_FILE)  # the data changed since: not re-read
    saved = TrainConfig(
        data=str(tmp_path), out="o", class_names=["a", "b"], palette=[[1, 2, 3], [4, 5, 6]]
    )
    assert saved.num_classes == 2 and saved.classes().names == ("a", "b")
    with pytest.raises(ValueError, match="2 colours"):
        TrainConfig(
            data=str(tmp_path), out="o", class_names=["a", "b", "c"], palette=[[1, 2, 3], [4, 5, 6]]
        )


def test_evaluating_on_data_labelled_with_other_classes_is_refused(tmp_path):
    from training.learning.evaluate import evaluate_run
    from training.learning.run_folder import RunFolder

    trained_on, other = tmp_path / "a", tmp_path / "b"
    write_labelmap(FLOORS, trained_on / LABELMAP_FILE)
    swapped = Labelmap(("background", "wall", "floor"), (FLOORS.colors[0], *FLOORS.colors[:0:-1]))
    write_labelmap(swapped, other / LABELMAP_FILE)
    run = RunFolder(tmp_path / "run")
    run.write_config(TrainConfig(data=str(trained_on), out=str(run.path)))
    assert (run.path / LABELMAP_FILE).read_text() == FLOORS.to_text()
    with pytest.raises(ValueError, match="names other classes than the run trained on"):
        evaluate_run(run.path, "val", data=other)
