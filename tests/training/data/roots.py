"""Tiny dataset roots in CVAT's layout with masks in any form, for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data import voc
from training.data.labelmap import LABELMAP_FILE, Labelmap, write_labelmap

TINY = Labelmap(("background", "floor", "wall"), ((0, 0, 0), (128, 64, 128), (102, 102, 156)))
"""Three classes, as a CVAT export of them names them."""


def write_root(
    root: Path,
    masks: dict[str, Image.Image],
    labelmap: Labelmap | None = TINY,
    list_name: str = "default",
) -> Path:
    """A root in CVAT's layout: the masks as given, a JPEG of each mask's size, one list,
    labelmap.txt (none when ``labelmap`` is None)."""
    rng = np.random.default_rng(0)
    for sample_id, mask in masks.items():
        voc.mask_path(root, sample_id).parent.mkdir(parents=True, exist_ok=True)
        mask.save(voc.mask_path(root, sample_id))
        image_file = root / voc.IMAGE_DIR / f"{sample_id}.jpg"
        image_file.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (mask.height, mask.width, 3), np.uint8)
        Image.fromarray(pixels).save(image_file)
    voc.split_list_path(root, list_name).parent.mkdir(parents=True, exist_ok=True)
    voc.split_list_path(root, list_name).write_text("\n".join(masks) + "\n")
    if labelmap is not None:
        write_labelmap(labelmap, root / LABELMAP_FILE)
    return root


def ids_grid(height: int = 6, width: int = 8) -> np.ndarray:
    """uint8 ids of TINY's three classes and one 255, in blocks."""
    ids = np.zeros((height, width), np.uint8)
    ids[height // 2 :] = 1
    ids[:, width // 2 :] = 2
    ids[0, 0] = 255
    return ids


def palettized(ids: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.fromarray(ids, mode="P")
    image.putpalette(np.asarray(palette, np.uint8).tobytes())
    return image


def colours(ids: np.ndarray, labelmap: Labelmap = TINY) -> Image.Image:
    """An RGB colour mask of ``ids`` (255 in VOC's boundary colour)."""
    return Image.fromarray(labelmap.palette()[ids])
