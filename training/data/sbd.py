"""SBD, the Semantic Boundaries Dataset (Hariharan et al., ICCV 2011): VOC's 20 classes on
11,355 VOC 2011 images, the extra labels behind every published VOC 2012 number (``train_aug``).

SBD ships its class labels as MATLAB files (``benchmark_RELEASE/dataset/cls/<id>.mat``, a
``GTcls`` struct whose ``Segmentation`` field is the H×W class-id map, 0 = background, no
255 border). They are converted once into single-channel index PNGs beside VOC's masks, in
``<VOC root>/SegmentationClassSBD/``, and SBD's own lists are copied to
``<VOC root>/ImageSets/SBD/{train,val}.txt``. Images come from VOC's ``JPEGImages/``, which
holds every SBD image.

``train_aug`` = SBD train ∪ SBD val ∪ VOC train − VOC val (all of val.txt, so neither val nor
test ever trains): 10,582 ids with the official lists, as published. It is computed from the
lists whenever it is asked for, never read from a stored list. Where VOC and SBD both label
an image, VOC's mask wins (:class:`training.data.layouts.VocLayout`): VOC 2012's own
annotation, with the 255 band around objects that VOC's scoring ignores, is the one its val
is labelled in.

    sbd_dir = download_sbd("data")                     # data/benchmark_RELEASE
    report = prepare_sbd("data/VOCdevkit/VOC2012", sbd_dir)
    print(report.summary())                            # counts of every list and train_aug
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from client.palette import IGNORE_LABEL
from training.data import voc
from training.data.download import download_archive
from training.data.problems import DatasetError, Problem

log = logging.getLogger(__name__)

SBD_URL = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"
"""MD5 of benchmark.tgz as torchvision's ``SBDataset`` checks it (torchvision/datasets/sbd.py);
SBD's page publishes none."""
SBD_TAR_NAME = "benchmark.tgz"
SBD_SUBDIR = Path("benchmark_RELEASE")
SBD_DATASET = Path("dataset")
"""Inside ``benchmark_RELEASE``: ``cls/``, ``img/``, ``inst/``, ``train.txt``, ``val.txt``."""
SBD_CLASSES = 21  # VOC's background + 20 classes, the same ids as VOC's

MASK_DIR = "SegmentationClassSBD"
"""SBD's masks as index PNGs, in the VOC root beside VOC's SegmentationClass/."""
LIST_DIR = Path("ImageSets") / "SBD"
"""SBD's own train.txt and val.txt, copied into the VOC root."""
MANIFEST_NAME = "manifest.json"
TRAIN_AUG = "train_aug"
SBD_LISTS = ("train", "val")


def download_sbd(
    root: str | Path,
    *,
    url: str = SBD_URL,
    from_tar: str | Path | None = None,
    md5: str = SBD_MD5,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download (or take ``from_tar``), verify and extract benchmark.tgz under
    ``root``, resumably, as VOC's; returns ``root/benchmark_RELEASE``. Idempotent."""
    return download_archive(
        root,
        SBD_SUBDIR,
        url=url,
        tar_name=SBD_TAR_NAME,
        from_tar=from_tar,
        md5=md5,
        retries=retries,
        progress=progress,
        what="SBD (benchmark.tgz)",
    )


def sbd_dataset_dir(path: str | Path) -> Path:
    """The folder holding SBD's ``cls/`` and lists, given it, ``benchmark_RELEASE`` or the
    folder above; FileNotFoundError naming the places looked at."""
    path = Path(path)
    candidates = [path, path / SBD_DATASET, path / SBD_SUBDIR / SBD_DATASET]
    for candidate in candidates:
        if (candidate / "cls").is_dir():
            return candidate
    tried = ", ".join(str(c / "cls") for c in candidates)
    raise FileNotFoundError(f"no SBD dataset at {path}: looked for {tried}")


def mask_path(voc_root: str | Path, sample_id: str) -> Path:
    """Where the converted SBD mask of ``sample_id`` is kept in a VOC root."""
    return Path(voc_root) / MASK_DIR / f"{sample_id}.png"


def list_path(voc_root: str | Path, name: str) -> Path:
    return Path(voc_root) / LIST_DIR / f"{name}.txt"


def has_sbd(voc_root: str | Path) -> bool:
    """True once :func:`prepare_sbd` has copied SBD's lists into the VOC root."""
    return all(list_path(voc_root, name).is_file() for name in SBD_LISTS)


class MatError(ValueError):
    """An SBD .mat file that cannot be read as a class map; the message names the file."""


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """H×W uint8 class ids of an SBD ``cls/<id>.mat`` (``GTcls.Segmentation``). MatError
    naming the file and what is wrong: unreadable, no GTcls/Segmentation, not a 2-D integer
    map, values other than VOC's ids 0–20 (255, "ignore", is let through; SBD has none)."""
    from scipy.io import loadmat  # scipy is slow to import; only conversion needs it

    try:
        content = loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, … on bad files
        raise MatError(f"{path}: unreadable .mat file ({type(error).__name__}: {error})") from None
    if "GTcls" not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise MatError(f"{path}: no GTcls struct (variables: {found}); is it from SBD's cls/?")
    segmentation = getattr(content["GTcls"], "Segmentation", None)
    if segmentation is None:
        fields = ", ".join(getattr(content["GTcls"], "_fieldnames", []) or []) or "none"
        raise MatError(f"{path}: GTcls has no Segmentation field (fields: {fields})")
    values = np.asarray(segmentation)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer) or 0 in values.shape:
        raise MatError(
            f"{path}: GTcls.Segmentation must be a 2-D integer class map, got "
            f"{values.dtype} {values.shape}"
        )
    allowed = (values >= 0) & ((values < SBD_CLASSES) | (values == IGNORE_LABEL))
    if not allowed.all():
        found, counts = np.unique(values[~allowed], return_counts=True)
        shown = ", ".join(f"{v} × {c:,} px" for v, c in zip(found[:10], counts[:10], strict=True))
        raise MatError(
            f"{path}: GTcls.Segmentation values: expected 0–{SBD_CLASSES - 1}, got "
            f"{found.tolist()[:10]} ({shown})"
        )
    return values.astype(np.uint8)


@dataclass
class SbdReport:
    """What :func:`prepare_sbd` did and the list arithmetic it enables."""

    voc_root: Path
    converted: int
    already: int
    counts: dict[str, int]

    def summary(self) -> str:
        c = self.counts
        return (
            f"SBD masks in {self.voc_root / MASK_DIR}: {self.converted} converted, "
            f"{self.already} already there\n"
            f"train_aug = SBD train {c['sbd_train']} ∪ SBD val {c['sbd_val']} ∪ VOC train "
            f"{c['voc_train']} − VOC val {c['voc_val']} = {c['train_aug']} ids "
            f"({c['voc_masks']} with VOC's own mask, {c['sbd_masks']} with SBD's)"
        )


def train_aug_ids(
    sbd_train: Iterable[str],
    sbd_val: Iterable[str],
    voc_train: Iterable[str],
    voc_val: Iterable[str],
) -> list[str]:
    """SBD train ∪ SBD val ∪ VOC train − VOC val, sorted (VOC's ids sort by year, then
    number)."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def resolve_train_aug(voc_root: str | Path) -> list[str]:
    """``train_aug`` of a VOC root that :func:`prepare_sbd` has prepared, from the four lists
    as they are now; FileNotFoundError naming a missing list (and how to make SBD's)."""
    for name in SBD_LISTS:
        if not list_path(voc_root, name).is_file():
            raise FileNotFoundError(
                f"{list_path(voc_root, name)} does not exist: the {TRAIN_AUG} split needs SBD "
                "(python -m training data download-sbd, then data prepare-sbd)"
            )
    return train_aug_ids(
        *(voc.read_split_list(list_path(voc_root, name)) for name in SBD_LISTS),
        *(voc.read_split_list(voc.split_list_path(voc_root, name)) for name in ("train", "val")),
    )


def train_aug_counts(voc_root: str | Path) -> dict[str, int]:
    """Sizes of the four lists, of ``train_aug`` and of its ids labelled by VOC and by SBD."""
    lists = {f"sbd_{n}": voc.read_split_list(list_path(voc_root, n)) for n in SBD_LISTS}
    for name in ("train", "val"):
        lists[f"voc_{name}"] = voc.read_split_list(voc.split_list_path(voc_root, name))
    ids = train_aug_ids(*lists.values())
    voc_masks = sum(voc.mask_path(voc_root, i).is_file() for i in ids)
    return {
        **{name: len(values) for name, values in lists.items()},
        "train_aug": len(ids),
        "voc_masks": voc_masks,
        "sbd_masks": len(ids) - voc_masks,
    }


def prepare_sbd(
    voc_root: str | Path,
    sbd_dir: str | Path,
    *,
    progress: bool = True,
) -> SbdReport:
    """Convert SBD's ``cls/*.mat`` of every id in SBD's train and val lists into index PNGs in
    ``<voc_root>/SegmentationClassSBD/`` and copy the lists to ``<voc_root>/ImageSets/SBD/``.

    Resumable and done once: a manifest records each converted source's (mtime, size), and is
    saved as conversion goes, so a second (or interrupted) run converts only what is new or
    changed. Every bad file (unreadable, not SBD's struct, odd values, missing) is named in
    the DatasetError raised at the end; the good ones are kept, none is dropped silently.
    """
    voc_root, dataset = Path(voc_root), sbd_dataset_dir(sbd_dir)
    for name in ("train", "val"):
        if not voc.split_list_path(voc_root, name).is_file():
            raise FileNotFoundError(
                f"{voc.split_list_path(voc_root, name)} does not exist: {voc_root} must be a "
                "VOC 2012 root (python -m training data download)"
            )
    lists = {name: voc.read_split_list(dataset / f"{name}.txt") for name in SBD_LISTS}
    ids = sorted({i for values in lists.values() for i in values})
    out_dir = voc_root / MASK_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir)
    sources = {i: dataset / "cls" / f"{i}.mat" for i in ids}
    stamps = {i: _stamp(path) for i, path in sources.items()}
    stale = [
        i
        for i in ids
        if stamps[i] is None or manifest.get(i) != stamps[i] or not mask_path(voc_root, i).exists()
    ]
    problems: list[Problem] = []

    def convert(sample_id: str) -> Problem | None:
        source = sources[sample_id]
        if stamps[sample_id] is None:
            return Problem(source, f"SBD mask missing (id {sample_id!r} is in SBD's lists)")
        try:
            ids_map = read_sbd_mat(source)
        except MatError as error:
            return Problem(source, str(error).removeprefix(f"{source}: "))
        target = mask_path(voc_root, sample_id)
        partial = target.with_name(target.name + ".tmp.png")
        Image.fromarray(ids_map, mode="L").save(partial)
        partial.replace(target)  # atomic: a reader never sees half a file
        return None

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(convert, stale)
        bar = tqdm(results, total=len(stale), desc="converting SBD", disable=not progress)
        for done, (sample_id, problem) in enumerate(zip(stale, bar, strict=True), start=1):
            if problem is None:
                manifest[sample_id] = stamps[sample_id]
            else:
                problems.append(problem)
            if done % 500 == 0:  # an interrupted run resumes from here
                _write_manifest(out_dir, manifest)
    _write_manifest(out_dir, manifest)
    if problems:
        raise DatasetError(problems, f"SBD at {dataset}")
    # Lists last: has_sbd() (and so train_aug) is true only once every mask is there.
    for name, values in lists.items():
        _write_list(list_path(voc_root, name), values)
    return SbdReport(voc_root, len(stale), len(ids) - len(stale), train_aug_counts(voc_root))


def _write_list(path: Path, ids: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("\n".join(ids) + "\n")
    partial.replace(path)


def _stamp(path: Path) -> list[int] | None:
    """(mtime_ns, size) of a source: any replacement, even by an older file, changes it."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return [stat.st_mtime_ns, stat.st_size]


def _read_manifest(out_dir: Path) -> dict[str, list[int]]:
    try:
        return json.loads((out_dir / MANIFEST_NAME).read_text()).get("sources", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_manifest(out_dir: Path, sources: dict[str, list[int]]) -> None:
    partial = out_dir / (MANIFEST_NAME + ".tmp")
    partial.write_text(json.dumps({"sources": sources}))
    partial.replace(out_dir / MANIFEST_NAME)
