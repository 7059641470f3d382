"""Cityscapes: a generated tree in the official layout (2 cities per split, tiny 2:1 PNGs with
label ids) through the label table, ``data check``, preview, a short training run whose
recorded classes are Cityscapes', evaluation, and bad input named by file and value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.cli import main as cli_main
from training.data import cityscapes
from training.data.check import check_root
from training.data.labelmap import read_labelmap
from training.data.layouts import CityscapesLayout, open_layout
from training.data.pipeline import make_dataset
from training.data.preview import preview_grid
from training.data.problems import DatasetError

HEIGHT, WIDTH = 32, 64  # 2:1, as Cityscapes' 2048×1024
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau")}
ROAD, SIDEWALK, SKY, CAR, PERSON, EGO = 7, 8, 23, 26, 24, 1  # label ids


def label_ids(seed: int) -> np.ndarray:
    """A road scene in label ids: sky above, road below with a sidewalk, a car and a person
    standing on it, the ego vehicle's bonnet (void) at the bottom."""
    rng = np.random.default_rng(seed)
    ids = np.full((HEIGHT, WIDTH), SKY, np.uint8)
    ids[HEIGHT // 2 :] = ROAD
    ids[HEIGHT // 2 :, : WIDTH // 4] = SIDEWALK
    x = int(rng.integers(WIDTH // 4, WIDTH - 20))
    ids[12:22, x : x + 16] = CAR
    ids[8:20, 4:8] = PERSON
    ids[-3:] = EGO
    return ids


def scene(ids: np.ndarray) -> np.ndarray:
    """The image the labels describe: each class a colour family, with noise."""
    rng = np.random.default_rng(int(ids.sum()))
    colours = cityscapes.ID_TO_TRAIN_ID[ids]
    palette = np.array([*cityscapes.CITYSCAPES_LABELMAP.colors, *[(0, 0, 0)] * 238], np.int32)
    rgb = palette[np.minimum(colours, 255)]
    return np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)


def write_sample(root: Path, split: str, city: str, frame: int, ids: np.ndarray) -> str:
    sample_id = f"{city}_000000_{frame:06d}"
    image = root / "leftImg8bit" / split / city / f"{sample_id}_leftImg8bit.png"
    mask = root / "gtFine" / split / city / f"{sample_id}_gtFine_labelIds.png"
    for path in (image, mask):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene(ids)).save(image)
    Image.fromarray(ids, mode="L").save(mask)
    return sample_id


def write_cityscapes(root: Path, per_city: int = 2) -> Path:
    seed = 0
    for split, cities in CITIES.items():
        for city in cities:
            for frame in range(per_city):
                write_sample(root, split, city, 19 + frame, label_ids(seed))
                seed += 1
    return root


@pytest.fixture
def city_root(tmp_path) -> Path:
    return write_cityscapes(tmp_path / "cityscapes")


def test_label_table_maps_ids_to_train_ids(tmp_path):
    labelmap = cityscapes.CITYSCAPES_LABELMAP
    assert labelmap.num_classes == 19
    assert labelmap.names[:3] == ("road", "sidewalk", "building")
    assert labelmap.names[-1] == "bicycle" and labelmap.colors[-1] == (119, 11, 32)
    assert labelmap.colors[labelmap.names.index("car")] == (0, 0, 142)
    path = tmp_path / "a_gtFine_labelIds.png"
    Image.fromarray(np.array([[ROAD, SKY, CAR, 0, 33, 29]], np.uint8), mode="L").save(path)
    # road 0, sky 10, car 13, unlabeled → 255, bicycle 18, caravan (ignored in eval) → 255
    assert cityscapes.read_train_ids(path).tolist() == [[0, 10, 13, 255, 18, 255]]


def test_layout_splits_and_files(city_root):
    layout = open_layout(city_root)
    assert isinstance(layout, CityscapesLayout)
    assert layout.list_names() == ["train", "val"]
    assert layout.resolve_split("train") == [
        "aachen_000000_000019",
        "aachen_000000_000020",
        "bochum_000000_000019",
        "bochum_000000_000020",
    ]
    assert layout.mask_path("lindau_000000_000020") == (
        city_root / "gtFine/val/lindau/lindau_000000_000020_gtFine_labelIds.png"
    )
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/test does not exist.*train, val"):
        layout.resolve_split("test")


def test_check_preview_and_pipeline(city_root, capsys):
    assert cli_main(["data", "check", "--root", str(city_root)]) == 0
    printed = capsys.readouterr().out
    assert "split train             4 ids" in printed and "split val" in printed
    assert " 13 car " in printed and "no problems found" in printed

    images, labels = next(
        iter(make_dataset(city_root, "val", batch_size=4, input_size=(HEIGHT, WIDTH)))
    )
    assert images.shape == (4, HEIGHT, WIDTH, 3)
    assert set(np.unique(labels.numpy())) == {0, 1, 10, 11, 13, 255}  # train ids and ignore

    grid = preview_grid(city_root, "train", count=2, input_size=(HEIGHT, WIDTH), augment=True)
    car = np.array(cityscapes.CITYSCAPES_LABELMAP.colors[13], np.uint8)
    assert (grid == car).all(axis=-1).any()  # masks coloured in Cityscapes' colours


def test_bad_masks_are_named_by_file_and_value(city_root):
    unknown = label_ids(7)
    unknown[0, :5] = 40
    bad_id = write_sample(city_root, "train", "aachen", 30, unknown)
    small = write_sample(city_root, "val", "lindau", 31, label_ids(8))
    Image.fromarray(label_ids(8)[:, :40], mode="L").save(open_layout(city_root).mask_path(small))
    problems = {p.path.name: p.what for p in check_root(city_root).problems}
    assert problems == {
        f"{bad_id}_gtFine_labelIds.png": "label ids: expected Cityscapes' 0–33, got [40] "
        "(40 × 5 px)",
        f"{small}_gtFine_labelIds.png": "size: expected the image's 64x32, got 40x32",
    }
    with pytest.raises(DatasetError, match=f"{bad_id}_gtFine_labelIds.png: label ids"):
        make_dataset(city_root, "train", batch_size=1, input_size=(HEIGHT, WIDTH))


@pytest.mark.slow
def test_train_and_evaluate_record_cityscapes_classes(city_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(city_root), "--out", str(run), "--preset", "smoke"]
    args += ["--input-size", f"{WIDTH}x{HEIGHT}", "--epochs", "1", "--steps-per-epoch", "2"]
    assert cli_main([*args, "--keras-verbose", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    labelmap = cityscapes.CITYSCAPES_LABELMAP
    assert config["class_names"] == list(labelmap.names)
    assert [tuple(c) for c in config["palette"]] == list(labelmap.colors)
    assert config["input_size"] == [HEIGHT, WIDTH]
    assert read_labelmap(run / "labelmap.txt") == labelmap  # what export's metadata answers
    assert (run / "splits" / "val.txt").read_text().split() == open_layout(city_root).resolve_split(
        "val"
    )

    assert cli_main(["evaluate", "--run", str(run), "--split", "val", "--json"]) == 0
    printed = capsys.readouterr().out.splitlines()
    scores = json.loads(next(line for line in printed if line.startswith("{")))
    assert scores["images"] == 4 and list(scores["per_class_iou"]) == list(labelmap.names)

    # Exported and verified on the run's own Cityscapes frames; the metadata signature answers
    # the official names and colours.
    import tensorflow as tf

    from training.export.publish import export_run

    report = export_run(run, tmp_path / "models", warmup_sizes=((HEIGHT, WIDTH),))
    assert report.verification.passed
    checked = [row.check for row in report.verification.rows]
    assert checked[:2] == open_layout(city_root).resolve_split("val")[:2]  # real frames
    metadata = tf.saved_model.load(str(report.path)).signatures["metadata"](request=[0])
    assert [n.decode() for n in metadata["class_names"].numpy()[0]] == list(labelmap.names)
    assert [tuple(c) for c in metadata["palette"].numpy()[0].tolist()] == list(labelmap.colors)
