"""A picture of what the model will see: pipeline outputs as image | colorized mask tiles, in
the dataset's own class colours, with a legend of its names.

write_preview("VOCdevkit/VOC2012", "train", "grid.png", augment=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from client.palette import IGNORE_LABEL, colorize
from training.data.labelmap import Color, Labelmap, class_names
from training.data.layouts import open_layout
from training.data.pipeline import make_dataset

GAP = 4
LEGEND_ROW = 22


def legend_entries(class_ids: Sequence[int], labelmap: Labelmap) -> list[tuple[int, str, Color]]:
    """(id, name, RGB colour) of each id: the labelmap's, "ignore (255)" in VOC's boundary
    colour, "class N" in VOC's colour for ids past the labelmap (a larger num_classes)."""
    palette = labelmap.palette()
    entries = []
    for class_id in class_ids:
        if class_id == IGNORE_LABEL:
            name = "ignore (255)"
        elif class_id < labelmap.num_classes:
            name = labelmap.names[class_id]
        else:
            name = class_names(labelmap.names, class_id + 1)[class_id]
        entries.append((int(class_id), name, tuple(int(c) for c in palette[class_id])))
    return entries


def _legend(class_ids: Sequence[int], width: int, labelmap: Labelmap) -> np.ndarray:
    """Rows of colour swatches with class names for the ids present in the grid."""
    entries = legend_entries(class_ids, labelmap)
    per_row = max(1, width // 150)
    rows = max(1, -(-len(entries) // per_row))
    legend = np.full((rows * LEGEND_ROW + GAP, width, 3), 255, np.uint8)
    for k, (_, name, color) in enumerate(entries):
        x, y = (k % per_row) * 150 + GAP, (k // per_row) * LEGEND_ROW + GAP
        cv2.rectangle(legend, (x, y), (x + 16, y + 16), color, -1)
        cv2.rectangle(legend, (x, y), (x + 16, y + 16), (0, 0, 0), 1)
        cv2.putText(
            legend,
            name,
            (x + 22, y + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return legend


def preview_grid(
    voc_root: str | Path,
    split: str = "train",
    *,
    augment: bool = False,
    count: int = 8,
    columns: int = 2,
    seed: int = 0,
    input_size: tuple[int, int] = (384, 384),
    index_dir: str | Path | None = None,
) -> np.ndarray:
    """RGB uint8 grid of ``count`` pipeline samples, each as image | colorized mask, + legend,
    in the dataset's colours and names (its labelmap.txt, Cityscapes' table, or VOC's)."""
    labelmap = open_layout(voc_root).labelmap()
    dataset = make_dataset(
        voc_root,
        split,
        batch_size=count,
        input_size=input_size,
        augment=augment,
        shuffle=augment,
        repeat=True,
        seed=seed,
        index_dir=index_dir,
        cache=False,
    )
    images, labels = next(iter(dataset))
    images = np.round(images.numpy() * 255).astype(np.uint8)
    labels = labels.numpy()
    palette = labelmap.palette()
    samples = [
        [image, colorize(label, palette)] for image, label in zip(images, labels, strict=True)
    ]
    return compose_grid(
        samples, columns=columns, class_ids=np.unique(labels).tolist(), labelmap=labelmap
    )


def compose_grid(
    samples: list[list[np.ndarray]],
    *,
    columns: int,
    class_ids: list[int],
    labelmap: Labelmap | None = None,
) -> np.ndarray:
    """RGB uint8 grid: each sample's tiles side by side (all tiles one size), then a legend of
    ``class_ids`` in ``labelmap``'s names and colours (VOC's by default; colorize the tiles
    with ``labelmap.palette()`` to match). Used for pipeline previews (image | mask) and
    evaluations (image | truth | prediction)."""
    h, w = samples[0][0].shape[:2]
    per_sample = len(samples[0])
    tile_w = per_sample * w + (per_sample - 1) * GAP
    rows = -(-len(samples) // columns)
    grid = np.full((rows * (h + GAP) + GAP, columns * (tile_w + 2 * GAP) + GAP, 3), 255, np.uint8)
    for k, tiles in enumerate(samples):
        y, x = GAP + (k // columns) * (h + GAP), GAP + (k % columns) * (tile_w + 2 * GAP)
        for tile in tiles:
            grid[y : y + h, x : x + w] = tile
            x += w + GAP
    legend = _legend(class_ids, grid.shape[1], labelmap or Labelmap.voc())
    return np.vstack([grid, legend])


def write_preview(voc_root: str | Path, split: str, out: str | Path, **kwargs) -> Path:
    """Write :func:`preview_grid` as a PNG; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(preview_grid(voc_root, split, **kwargs)).save(out)
    return out
