"""Dataset layouts: how a root's splits, files and classes are found, whatever the dataset.

Every reader (checks, index masks, the tf.data pipeline, preview, training's split lists)
asks a root's layout for the same few things: the lists a root has, the ids of a split, an
id's image and mask files, the classes, and how a mask file becomes class ids. Two layouts
serve every dataset here:

- :class:`VocLayout`: VOC 2012 and CVAT's "Segmentation mask 1.1" export
  (:mod:`training.data.voc`, :mod:`training.data.masks`), plus SBD's extra masks once
  ``data prepare-sbd`` has converted them (:mod:`training.data.sbd`): the ``train_aug``
  split, and SBD's mask for an id that VOC has none for.
- :class:`CityscapesLayout`: ``leftImg8bit/`` and ``gtFine/`` folders, label ids mapped to
  the 19 train ids (:mod:`training.data.cityscapes`).

    layout = open_layout("data/cityscapes")          # chosen by what the root holds
    ids = layout.resolve_split("val")
    layout.image_path(ids[0]), layout.mask_path(ids[0])
    labelmap, num_classes = layout.classes()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from training.data import cityscapes, sbd, voc
from training.data.labelmap import LABELMAP_FILE, Labelmap, LabelmapError, dataset_labelmap
from training.data.masks import check_ids, dataset_classes, read_class_ids
from training.data.problems import Problem


class DatasetLayout(ABC):
    """Where a root keeps its samples and what its masks mean."""

    kind: str

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @abstractmethod
    def list_names(self) -> list[str]:
        """The lists (splits as stored) ``data check`` covers."""

    @abstractmethod
    def list_path(self, name: str) -> Path:
        """Where list ``name`` is kept (named in problems)."""

    @abstractmethod
    def list_ids(self, name: str) -> list[str]:
        """The ids of list ``name`` as stored (RepeatedIdsError, FileNotFoundError)."""

    def missing_lists_problem(self) -> Problem:
        """What ``data check`` says of a root without any list."""
        return Problem(self.list_path("*").parent, "no split lists found")

    @abstractmethod
    def resolve_split(
        self,
        split: str,
        *,
        seed: int = voc.DEFAULT_SPLIT_SEED,
        val_fraction: float = voc.DEFAULT_VAL_FRACTION,
        test_fraction: float = voc.DEFAULT_TEST_FRACTION,
    ) -> list[str]:
        """The ids of ``split`` (train, val, test, or any list the root has)."""

    @abstractmethod
    def image_path(self, sample_id: str) -> Path: ...

    @abstractmethod
    def missing_image_message(self, sample_id: str) -> str: ...

    @abstractmethod
    def mask_path(self, sample_id: str) -> Path: ...

    @abstractmethod
    def labelmap(self) -> Labelmap:
        """The root's classes (LabelmapError when they cannot be read)."""

    @abstractmethod
    def classes(self, num_classes: int | None = None) -> tuple[Labelmap, int]:
        """(labelmap, class count) masks are read and checked with."""

    @abstractmethod
    def read_class_ids(
        self, path: str | Path, labelmap: Labelmap, num_classes: int | None = None
    ) -> np.ndarray:
        """H×W uint8 class ids (255 = ignore) of a mask file; MaskError naming bad values."""

    @property
    def classes_source(self) -> str:
        """What defines the classes, for messages."""
        return str(self.root / LABELMAP_FILE)

    def declares_classes(self) -> bool:
        """True when the root names its own classes (not VOC's by default)."""
        return (self.root / LABELMAP_FILE).is_file()

    def index_key(self) -> dict[str, str]:
        """What converted index masks depend on beyond the labelmap and class count."""
        return {}


class VocLayout(DatasetLayout):
    """VOC 2012 / CVAT export (``JPEGImages/``, ``SegmentationClass/``,
    ``ImageSets/Segmentation/``), with SBD's masks and ``train_aug`` once prepared."""

    kind = "voc"

    def list_names(self) -> list[str]:
        names = voc.split_list_names(self.root) if (self.root / voc.SPLIT_DIR).is_dir() else []
        if sbd.has_sbd(self.root) and sbd.TRAIN_AUG not in names:
            names.append(sbd.TRAIN_AUG)
        return names

    def missing_lists_problem(self) -> Problem:
        return Problem(self.root / voc.SPLIT_DIR, "no split lists (*.txt) found")

    def _computes_train_aug(self, name: str) -> bool:
        """``train_aug`` is computed from the lists once SBD is prepared; a stored
        train_aug.txt without SBD is read as any other list."""
        stored = voc.split_list_path(self.root, name).is_file()
        return name == sbd.TRAIN_AUG and (sbd.has_sbd(self.root) or not stored)

    def list_path(self, name: str) -> Path:
        if self._computes_train_aug(name):
            return self.root / sbd.LIST_DIR
        return voc.split_list_path(self.root, name)

    def list_ids(self, name: str) -> list[str]:
        if self._computes_train_aug(name):
            return sbd.resolve_train_aug(self.root)
        return voc.read_split_list(voc.split_list_path(self.root, name))

    def resolve_split(
        self,
        split: str,
        *,
        seed: int = voc.DEFAULT_SPLIT_SEED,
        val_fraction: float = voc.DEFAULT_VAL_FRACTION,
        test_fraction: float = voc.DEFAULT_TEST_FRACTION,
    ) -> list[str]:
        if self._computes_train_aug(split):
            return sbd.resolve_train_aug(self.root)
        return voc.resolve_split(
            self.root, split, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )

    def image_path(self, sample_id: str) -> Path:
        return voc.image_path(self.root, sample_id)

    def missing_image_message(self, sample_id: str) -> str:
        return voc.missing_image_message(self.root, sample_id)

    def mask_path(self, sample_id: str) -> Path:
        """VOC's mask; SBD's only where VOC has none (VOC's own annotation wins)."""
        own = voc.mask_path(self.root, sample_id)
        if own.is_file():
            return own
        extra = sbd.mask_path(self.root, sample_id)
        return extra if extra.is_file() else own

    def labelmap(self) -> Labelmap:
        return dataset_labelmap(self.root)

    def classes(self, num_classes: int | None = None) -> tuple[Labelmap, int]:
        return dataset_classes(self.root, num_classes)

    def read_class_ids(
        self, path: str | Path, labelmap: Labelmap, num_classes: int | None = None
    ) -> np.ndarray:
        return read_class_ids(path, labelmap, num_classes)


class CityscapesLayout(DatasetLayout):
    """Cityscapes' official layout; splits are folders, classes the official 19."""

    kind = "cityscapes"

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.folders = cityscapes.CityscapesFolders(self.root)

    def list_names(self) -> list[str]:
        return self.folders.split_names()

    def list_path(self, name: str) -> Path:
        return self.root / cityscapes.IMAGE_DIR / name

    def missing_lists_problem(self) -> Problem:
        return Problem(self.root / cityscapes.IMAGE_DIR, "no split folders (train, val, test)")

    def list_ids(self, name: str) -> list[str]:
        return self.folders.split_ids(name)

    def resolve_split(self, split: str, **_: object) -> list[str]:
        """The ids of folder ``leftImg8bit/<split>`` (the split options play no part)."""
        return self.folders.split_ids(split)

    def image_path(self, sample_id: str) -> Path:
        return self.folders.image_path(sample_id)

    def missing_image_message(self, sample_id: str) -> str:
        return f"image missing for id {sample_id!r}"

    def mask_path(self, sample_id: str) -> Path:
        return self.folders.mask_path(sample_id)

    def labelmap(self) -> Labelmap:
        return cityscapes.CITYSCAPES_LABELMAP

    def classes(self, num_classes: int | None = None) -> tuple[Labelmap, int]:
        labelmap = cityscapes.CITYSCAPES_LABELMAP
        if num_classes is not None and num_classes != labelmap.num_classes:
            raise LabelmapError(
                self.classes_source,
                [
                    f"Cityscapes has {labelmap.num_classes} training classes, but "
                    f"num_classes is {num_classes}; leave num_classes out"
                ],
            )
        return labelmap, labelmap.num_classes

    def read_class_ids(
        self, path: str | Path, labelmap: Labelmap, num_classes: int | None = None
    ) -> np.ndarray:
        ids = cityscapes.read_train_ids(path)
        check_ids(path, ids, labelmap.num_classes if num_classes is None else num_classes)
        return ids

    @property
    def classes_source(self) -> str:
        return f"{self.root} (Cityscapes' official label table)"

    def declares_classes(self) -> bool:
        return True

    def index_key(self) -> dict[str, str]:
        return {"masks": "cityscapes labelIds → trainIds"}


def open_layout(root: str | Path) -> DatasetLayout:
    """The layout of ``root``: Cityscapes' when it has ``leftImg8bit/`` and ``gtFine/``,
    else VOC's (which names what it misses)."""
    if cityscapes.is_cityscapes_root(root) and not (Path(root) / voc.SPLIT_DIR).is_dir():
        return CityscapesLayout(root)
    return VocLayout(root)


def as_layout(root: str | Path | DatasetLayout) -> DatasetLayout:
    """``root``'s layout, or ``root`` itself when it is one (callers that read many samples
    open it once)."""
    return root if isinstance(root, DatasetLayout) else open_layout(root)
