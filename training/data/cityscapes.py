"""Cityscapes (Cordts et al., CVPR 2016): road scenes at 2048×1024, 19 training classes.

The official layout, as the site's ``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip`` unpack side by side into one root::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Splits are the folder names (train, val, test); a sample's id is ``<city>_<seq>_<frame>``
(cities carry no underscore, so ids are unique across them). Masks hold the official label
ids (0–33); they are mapped to the 19 train ids (0–18, everything else 255 = ignore) with the
official table, whose names and colours become the run's classes. The table below is
``cityscapesscripts/helpers/labels.py`` (cityscapesScripts 2.3.0, checked row by row): the
package itself pulls in the obsolete ``typing`` backport, which shadows the standard library,
so the 35 rows are written here once instead of depending on it.

    folders = CityscapesFolders("data/cityscapes")
    folders.split_ids("val")[:1]            # ['frankfurt_000000_000294']
    train_ids = read_train_ids(folders.mask_path("frankfurt_000000_000294"))
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from client.palette import IGNORE_LABEL
from training.data.labelmap import Labelmap
from training.data.masks import INDEX_MODES, MaskError


class Label(NamedTuple):
    """One row of the official table (cityscapesscripts.helpers.labels.Label, less the
    category and instance columns)."""

    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
    Label("license plate", -1, -1, (0, 0, 142)),  # never in labelIds images
)

TRAIN_LABELS = tuple(
    sorted((label for label in LABELS if 0 <= label.train_id < IGNORE_LABEL), key=lambda x: x[2])
)
CITYSCAPES_LABELMAP = Labelmap(
    tuple(label.name for label in TRAIN_LABELS), tuple(label.color for label in TRAIN_LABELS)
)
"""The 19 classes in train-id order, with the official colours."""

UNKNOWN = 256  # in the lookup: a value with no row in the table
ID_TO_TRAIN_ID = np.full(256, UNKNOWN, np.int32)
for _label in LABELS:
    if _label.id >= 0:
        ID_TO_TRAIN_ID[_label.id] = _label.train_id

IMAGE_DIR = "leftImg8bit"
MASK_DIR = "gtFine"
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")


def is_cityscapes_root(root: str | Path) -> bool:
    """True for a root in Cityscapes' layout (``leftImg8bit/`` and ``gtFine/``)."""
    return (Path(root) / IMAGE_DIR).is_dir() and (Path(root) / MASK_DIR).is_dir()


def city_of(sample_id: str) -> str:
    return sample_id.split("_", 1)[0]


def read_train_ids(path: str | Path) -> np.ndarray:
    """H×W uint8 train ids (0–18, 255 = ignore) of a ``*_gtFine_labelIds.png``. MaskError
    naming the file and each value that is no label id of the table (e.g. 40) with its pixel
    count, or a colour mask given where label ids are expected."""
    with Image.open(path) as image:
        image.load()
        if image.mode not in INDEX_MODES:
            raise MaskError(
                path,
                f"mask mode: expected single-channel label ids (L), got {image.mode} "
                "(the *_gtFine_color.png masks are for looking at; use *_gtFine_labelIds.png)",
            )
        values = np.asarray(image).astype(np.int64)
    outside = (values < 0) | (values > 255)
    lookup = ID_TO_TRAIN_ID[np.clip(values, 0, 255)]
    unknown = outside | (lookup == UNKNOWN)
    if unknown.any():
        found, counts = np.unique(values[unknown], return_counts=True)
        shown = ", ".join(f"{v} × {c:,} px" for v, c in zip(found[:10], counts[:10], strict=True))
        known = max(label.id for label in LABELS)
        raise MaskError(
            path,
            f"label ids: expected Cityscapes' 0–{known}, got {found.tolist()[:10]} ({shown})",
        )
    return lookup.astype(np.uint8)


class CityscapesFolders:
    """Ids and files of a Cityscapes root, found by scanning its folders once per split
    (:class:`training.data.layouts.CityscapesLayout` reads a root through it)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._splits: dict[str, dict[str, Path]] = {}
        self._names: list[str] | None = None
        self._split_of: dict[str, str] | None = None

    def split_names(self) -> list[str]:
        """The splits whose image folders exist, in train, val, test order (others after)."""
        # Built whole, then published: worker threads (data check) may ask at once.
        if self._names is None:
            present = [p.name for p in sorted((self.root / IMAGE_DIR).iterdir()) if p.is_dir()]
            names = [s for s in SPLITS if s in present]
            self._names = names + [s for s in present if s not in SPLITS]
        return self._names

    def images(self, split: str) -> dict[str, Path]:
        """id → image file of ``split``, sorted by id. FileNotFoundError naming the folder
        and the splits the root has; ValueError naming both files of an id found twice."""
        if split not in self._splits:
            folder = self.root / IMAGE_DIR / split
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder} does not exist: Cityscapes' splits are folders of "
                    f"{self.root / IMAGE_DIR} (here: {', '.join(self.split_names()) or 'none'})"
                )
            found: dict[str, Path] = {}
            for path in sorted(folder.glob(f"*/*{IMAGE_SUFFIX}")):
                sample_id = path.name.removesuffix(IMAGE_SUFFIX)
                if sample_id in found:
                    raise ValueError(f"{path}: id {sample_id!r} is also {found[sample_id]}")
                found[sample_id] = path
            self._splits[split] = found
        return self._splits[split]

    def split_ids(self, split: str) -> list[str]:
        return list(self.images(split))

    def split_of(self, sample_id: str) -> str:
        """The split folder that holds ``sample_id`` (all of them scanned once)."""
        if self._split_of is None:  # built whole, then published (threads may ask at once)
            split_of: dict[str, str] = {}
            for split in reversed(self.split_names()):  # the first split wins a repeated id
                split_of.update(dict.fromkeys(self.images(split), split))
            self._split_of = split_of
        if sample_id not in self._split_of:
            raise KeyError(f"id {sample_id!r} is in no split of {self.root / IMAGE_DIR}")
        return self._split_of[sample_id]

    def image_path(self, sample_id: str) -> Path:
        split = self.split_of(sample_id)
        return self.images(split)[sample_id]

    def mask_path(self, sample_id: str) -> Path:
        split = self.split_of(sample_id)
        city = self.images(split)[sample_id].parent.name
        return self.root / MASK_DIR / split / city / f"{sample_id}{MASK_SUFFIX}"
