"""Mask files in every common form → class ids, through the dataset's labelmap.

A ``SegmentationClass/<id>.png`` may be

- **palettized** (mode P): the indices are the class ids (VOC, and tools that write
  ``Labelmap.palette()``); 255 is "ignore";
- **single-channel** (mode L, or 16-bit I;16 / I with values below 256): the values are the
  ids; 255 is "ignore";
- **colour** (mode RGB, or RGBA whose alpha is opaque everywhere): CVAT's "Segmentation mask
  1.1" masks; each colour is looked up in the labelmap, VOC's boundary colour (224,224,192)
  is "ignore".

Palettized masks of a dataset with its own classes (a labelmap other than VOC's): the
palette says what an annotator saw, the indices what a program wrote. They agree in masks
written by CVAT or with the labelmap's palette, and then the indices are the ids. They
disagree when an editor re-indexed a colour mask (GIMP's and Photoshop's "indexed" modes
order the palette by use, not by class): then the colours are the truth and are looked up
in the labelmap, as a colour mask's would be. When they disagree and some used colour is
not in the labelmap either, neither reading can be trusted, and the mask is refused naming
the indices and their colours. In a VOC root (no labelmap.txt) the indices are read as ids
whatever the palette, as VOC and this project always have: the palette only colours them.

Every problem names the file and the offending value or colour with its pixel count; no
pixel is ever silently made background.

    labelmap, num_classes = dataset_classes("data/my_floors")
    ids = read_class_ids("data/my_floors/SegmentationClass/a.png", labelmap, num_classes)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from client.palette import IGNORE_LABEL
from training.data.labelmap import (
    BOUNDARY_COLOR,
    LABELMAP_FILE,
    Labelmap,
    LabelmapError,
    dataset_labelmap,
)

INDEX_MODES = ("P", "L", "I;16", "I")
COLOR_MODES = ("RGB", "RGBA")
VOC_LABELMAP = Labelmap.voc()


class MaskError(ValueError):
    """A mask that cannot be read as class ids: ``path`` and ``what`` is wrong with it."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what
        super().__init__(f"{path}: {what}")


def dataset_classes(root: str | Path, num_classes: int | None = None) -> tuple[Labelmap, int]:
    """The labelmap a root's masks are read with, and the class count ids are checked for.

    ``num_classes=None`` takes the labelmap's. A root with labelmap.txt fixes the count: any
    other is LabelmapError. A VOC root (no labelmap.txt) takes any count, as own data in
    VOC's layout with palettized masks always could.
    """
    labelmap = dataset_labelmap(root)
    if num_classes is None:
        return labelmap, labelmap.num_classes
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    path = Path(root) / LABELMAP_FILE
    if path.is_file() and num_classes != labelmap.num_classes:
        raise LabelmapError(
            path,
            [
                f"names {labelmap.num_classes} classes ({', '.join(labelmap.names)}), but "
                f"num_classes is {num_classes}; leave num_classes out to use the labelmap's"
            ],
        )
    return labelmap, num_classes


def read_class_ids(
    path: str | Path, labelmap: Labelmap, num_classes: int | None = None
) -> np.ndarray:
    """H×W uint8 class ids (255 = ignore) of a mask file in any form the module docstring
    lists. MaskError naming the file and every bad value or colour with its pixel count: an
    unsupported mode, transparency, colours not in the labelmap, ids ≥ ``num_classes``
    (default: the labelmap's) other than 255. OSError when the file is missing or broken."""
    num_classes = labelmap.num_classes if num_classes is None else num_classes
    with Image.open(path) as image:
        image.load()
        if image.mode == "P":
            ids = _palettized_ids(path, image, labelmap)
        elif image.mode in INDEX_MODES:
            ids = _index_ids(path, np.asarray(image))
        elif image.mode in COLOR_MODES:
            ids = labelmap.ids_of_colors(_opaque_rgb(path, np.asarray(image)), where=path)
        else:
            raise MaskError(
                path,
                f"mask mode: expected palettized (P), single-channel index (L) or colour (RGB) "
                f"PNG, got {image.mode}",
            )
    check_ids(path, ids, num_classes)
    return ids


def check_ids(path: str | Path, ids: np.ndarray, num_classes: int) -> np.ndarray:
    """``ids`` if every value is below ``num_classes`` or 255; MaskError naming the others
    and their pixel counts. Returns the 256-bin histogram, for callers that count classes."""
    counts = np.bincount(ids.ravel(), minlength=256)
    allowed = np.zeros(256, bool)
    allowed[:num_classes] = allowed[IGNORE_LABEL] = True
    bad = np.flatnonzero((counts > 0) & ~allowed)
    if bad.size:
        shown = ", ".join(f"{value} × {counts[value]:,} px" for value in bad[:10])
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        raise MaskError(
            path,
            f"mask values: expected 0–{num_classes - 1} and 255, got {bad.tolist()} "
            f"({shown}{more})",
        )
    return counts


def _index_ids(path: str | Path, values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values.copy()
    outside = (values < 0) | (values > 255)
    if outside.any():
        found, counts = np.unique(values[outside], return_counts=True)
        shown = ", ".join(f"{v} × {c:,} px" for v, c in zip(found[:5], counts[:5], strict=True))
        raise MaskError(path, f"mask values: ids must fit in 0–255, got {shown}")
    return values.astype(np.uint8)


def _opaque_rgb(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """RGB of an RGB or RGBA mask; transparency would hide what class a pixel is."""
    if pixels.shape[-1] == 4:
        clear = pixels[..., 3] != 255
        if clear.any():
            y, x = np.argwhere(clear)[0]
            raise MaskError(
                path,
                f"mask has transparency: {int(clear.sum()):,} px with alpha below 255 (first at "
                f"row {y}, col {x}); export colour masks without alpha",
            )
        pixels = pixels[..., :3]
    return pixels


def _palettized_ids(path: str | Path, image: Image.Image, labelmap: Labelmap) -> np.ndarray:
    """Indices as ids, or the palette's colours through the labelmap (see the module)."""
    indices = np.asarray(image).copy()
    if labelmap == VOC_LABELMAP:
        return indices
    palette = np.zeros((256, 3), np.uint8)
    entries = np.frombuffer(bytes(image.getpalette("RGB") or []), np.uint8).reshape(-1, 3)
    palette[: len(entries)] = entries[:256]
    used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
    used = used[used != IGNORE_LABEL]  # 255 in index masks is "ignore", whatever its colour
    expected = labelmap.palette()
    if all(tuple(palette[i]) == tuple(expected[i]) for i in used if i < labelmap.num_classes):
        return indices  # values ≥ the class count are named by check_ids
    known = {*labelmap.colors, BOUNDARY_COLOR}
    strangers = [  # a colour outside the labelmap, or an index past the file's palette
        int(i) for i in used if i >= len(entries) or tuple(map(int, palette[i])) not in known
    ]
    if strangers:
        counts = np.bincount(indices.ravel(), minlength=256)
        shown = ", ".join(
            f"index {i} {tuple(map(int, palette[i]))} × {counts[i]:,} px" for i in strangers[:5]
        )
        more = f" and {len(strangers) - 5} more" if len(strangers) > 5 else ""
        raise MaskError(
            path,
            "palettized mask: its palette is not the labelmap's (the index of a class is not "
            f"its id) and {len(strangers)} used colour(s) are not in the labelmap either: "
            f"{shown}{more}; write the mask as RGB colours or with the labelmap's palette "
            "(training.data.voc.write_mask(ids, path, labelmap.palette()))",
        )
    lookup = labelmap.ids_of_colors(palette[None, used], where=path)[0]
    table = np.zeros(256, np.uint8)
    table[used] = lookup
    table[IGNORE_LABEL] = IGNORE_LABEL
    return table[indices]
