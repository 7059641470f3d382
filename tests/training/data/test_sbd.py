"""SBD: .mat → index PNG conversion, the train_aug arithmetic and reading it, on generated
trees (SBD's cls/*.mat written with scipy, a small VOC root); no downloads."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from training.cli import main as cli_main
from training.config import TrainConfig
from training.data import sbd, voc
from training.data.check import check_root
from training.data.download import DownloadError, file_md5
from training.data.index_masks import index_mask_path, prepare_index_masks
from training.data.layouts import open_layout
from training.data.pipeline import make_dataset
from training.data.problems import DatasetError

SIZE = (12, 16)  # height, width
VOC_LISTS = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003", "2007_000004"]}
SBD_LISTS = {
    # 2007_000003 is in VOC's val: never trained on; 2007_000001 is labelled by both.
    "train": ["2008_000010", "2008_000011", "2007_000003", "2007_000001"],
    "val": ["2008_000012", "2007_000004"],
}
TRAIN_AUG = ["2007_000001", "2007_000002", "2008_000010", "2008_000011", "2008_000012"]


def sbd_ids(sample_id: str) -> np.ndarray:
    """A class map as SBD has them: VOC's ids, no 255 border; one class per id."""
    ids = np.zeros(SIZE, np.uint8)
    ids[4:, 3:] = int(sample_id[-2:]) % 20 + 1
    return ids


def write_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD-style cls/<id>.mat: struct GTcls with Segmentation, Boundaries,
    CategoriesPresent (savemat writes a dict as a MATLAB struct)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8)
    savemat(
        path,
        {
            "GTcls": {
                "Segmentation": segmentation,
                "Boundaries": np.zeros((20, 1), object),
                "CategoriesPresent": present,
            }
        },
    )


@pytest.fixture
def trees(tmp_path) -> tuple[Path, Path]:
    """(VOC root, SBD's benchmark_RELEASE): VOC masks with a 255 border, SBD's .mat files."""
    voc_root, sbd_root = tmp_path / "VOC2012", tmp_path / "benchmark_RELEASE"
    rng = np.random.default_rng(0)
    every = {i for ids in (*VOC_LISTS.values(), *SBD_LISTS.values()) for i in ids}
    for sample_id in every:
        image = voc_root / voc.IMAGE_DIR / f"{sample_id}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*SIZE, 3), np.uint8)).save(image)
    for name, ids in VOC_LISTS.items():
        voc.split_list_path(voc_root, name).parent.mkdir(parents=True, exist_ok=True)
        voc.split_list_path(voc_root, name).write_text("\n".join(ids) + "\n")
        for sample_id in ids:
            mask = np.full(SIZE, 15, np.uint8)  # person, with VOC's border band
            mask[0] = 255
            voc.write_mask(mask, voc.mask_path(voc_root, sample_id))
    dataset = sbd_root / "dataset"
    for name, ids in SBD_LISTS.items():
        dataset.mkdir(parents=True, exist_ok=True)
        (dataset / f"{name}.txt").write_text("\n".join(ids) + "\n")
        for sample_id in ids:
            write_mat(dataset / "cls" / f"{sample_id}.mat", sbd_ids(sample_id))
    return voc_root, sbd_root


def test_train_aug_is_the_list_arithmetic():
    assert sbd.train_aug_ids(["a", "b", "v"], ["c", "w"], ["t", "a"], ["v", "w"]) == [
        "a",
        "b",
        "c",
        "t",
    ]


def test_prepare_converts_records_and_counts(trees, capsys):
    voc_root, sbd_root = trees
    assert not sbd.has_sbd(voc_root)
    with pytest.raises(FileNotFoundError, match="data download-sbd, then data prepare-sbd"):
        open_layout(voc_root).resolve_split("train_aug")

    assert (
        cli_main(["data", "prepare-sbd", "--voc-root", str(voc_root), "--sbd", str(sbd_root)]) == 0
    )
    printed = capsys.readouterr().out
    assert "6 converted, 0 already there" in printed
    assert "SBD train 4 ∪ SBD val 2 ∪ VOC train 2 − VOC val 2 = 5 ids" in printed
    assert "(2 with VOC's own mask, 3 with SBD's)" in printed

    layout = open_layout(voc_root)
    assert layout.resolve_split("train_aug") == TRAIN_AUG
    for sample_id in {i for ids in SBD_LISTS.values() for i in ids}:
        with Image.open(sbd.mask_path(voc_root, sample_id)) as png:
            assert png.mode == "L"
            converted = np.asarray(png)
        np.testing.assert_array_equal(converted, sbd_ids(sample_id))  # no 255: SBD has none
    # Labelled by both: VOC's mask (with its 255 border) wins; SBD's only where VOC has none.
    assert layout.mask_path("2007_000001") == voc.mask_path(voc_root, "2007_000001")
    assert layout.mask_path("2008_000010") == sbd.mask_path(voc_root, "2008_000010")
    index_dir = prepare_index_masks(voc_root, TRAIN_AUG, progress=False)
    assert 255 in voc.read_mask(index_mask_path(index_dir, "2007_000001"))
    np.testing.assert_array_equal(
        voc.read_mask(index_mask_path(index_dir, "2008_000011")), sbd_ids("2008_000011")
    )

    report = check_root(voc_root)
    assert report.ok, report.format()
    assert report.split_counts == {"train": 2, "val": 2, "train_aug": 5}

    # A run's split comes from the same computation, and the run records the ids it gets.
    config = TrainConfig(data=str(voc_root), out="unused", train_split="train_aug")
    assert config.split("train_aug") == TRAIN_AUG


def test_prepare_is_resumable_and_notices_a_replaced_file(trees):
    voc_root, sbd_root = trees
    assert sbd.prepare_sbd(voc_root, sbd_root, progress=False).converted == 6
    again = sbd.prepare_sbd(voc_root, sbd_root.parent, progress=False)  # the folder above works
    assert (again.converted, again.already) == (0, 6)
    replaced = np.full(SIZE, 7, np.uint8)
    write_mat(sbd_root / "dataset" / "cls" / "2008_000012.mat", replaced)
    assert sbd.prepare_sbd(voc_root, sbd_root, progress=False).converted == 1
    np.testing.assert_array_equal(voc.read_mask(sbd.mask_path(voc_root, "2008_000012")), replaced)


def test_bad_mat_files_are_named_and_nothing_else_is_lost(trees):
    voc_root, sbd_root = trees
    cls = sbd_root / "dataset" / "cls"
    (cls / "2008_000010.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    odd = sbd_ids("2008_000011")
    odd[0, :2] = 40
    write_mat(cls / "2008_000011.mat", odd)
    savemat(cls / "2008_000012.mat", {"GTinst": {"Segmentation": sbd_ids("2008_000012")}})
    (cls / "2007_000004.mat").unlink()
    with pytest.raises(DatasetError) as raised:
        sbd.prepare_sbd(voc_root, sbd_root, progress=False)
    problems = {p.path.name: p.what for p in raised.value.problems}
    assert problems.keys() == {"2008_000010.mat", "2008_000011.mat", "2008_000012.mat",
                               "2007_000004.mat"}  # fmt: skip
    assert "unreadable .mat file" in problems["2008_000010.mat"]
    assert "expected 0–20, got [40] (40 × 2 px)" in problems["2008_000011.mat"]
    assert "no GTcls struct (variables: GTinst)" in problems["2008_000012.mat"]
    assert "SBD mask missing" in problems["2007_000004.mat"]
    assert sbd.mask_path(voc_root, "2007_000003").is_file()  # the good ones are converted
    assert not sbd.has_sbd(voc_root)  # no train_aug until every listed mask is there


def test_make_dataset_reads_train_aug(trees):
    voc_root, sbd_root = trees
    sbd.prepare_sbd(voc_root, sbd_root, progress=False)
    dataset = make_dataset(voc_root, "train_aug", batch_size=5, input_size=SIZE, cache=False)
    images, labels = next(iter(dataset))
    assert images.shape == (5, *SIZE, 3)
    by_id = dict(zip(TRAIN_AUG, labels.numpy(), strict=True))
    assert set(np.unique(by_id["2007_000001"])) == {15, 255}  # VOC's
    np.testing.assert_array_equal(by_id["2008_000010"], sbd_ids("2008_000010"))  # SBD's


def test_download_sbd_from_a_local_tgz(tmp_path, trees):
    _, sbd_root = trees
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(sbd_root, arcname="benchmark_RELEASE")
    tgz = tmp_path / "benchmark.tgz"
    tgz.write_bytes(buffer.getvalue())
    md5 = file_md5(tgz)
    out = tmp_path / "data"
    assert sbd.download_sbd(out, from_tar=tgz, md5=md5, progress=False) == out / "benchmark_RELEASE"
    assert sbd.sbd_dataset_dir(out) == out / "benchmark_RELEASE" / "dataset"
    with pytest.raises(DownloadError, match="expected MD5 " + sbd.SBD_MD5):
        sbd.download_sbd(tmp_path / "other", from_tar=tgz, progress=False)
