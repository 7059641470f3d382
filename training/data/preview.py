"""A picture of what the model will see: pipeline outputs as image | colorized mask tiles.

write_preview("VOCdevkit/VOC2012", "train", "grid.png", augment=True)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from client.palette import colorize, voc_colormap
from training.data import voc
from training.data.pipeline import make_dataset

GAP = 4
LEGEND_ROW = 22


def _legend(class_ids: list[int], width: int) -> np.ndarray:
    """Rows of colour swatches with class names for the ids present in the grid."""
    palette = voc_colormap()
    entries = [(i, voc.class_names[i] if i < voc.NUM_CLASSES else f"class {i}") for i in class_ids]
    entries = [(i, "ignore (255)" if i == voc.IGNORE_LABEL else name) for i, name in entries]
    per_row = max(1, width // 150)
    rows = max(1, -(-len(entries) // per_row))
    legend = np.full((rows * LEGEND_ROW + GAP, width, 3), 255, np.uint8)
    for k, (class_id, name) in enumerate(entries):
        x, y = (k % per_row) * 150 + GAP, (k // per_row) * LEGEND_ROW + GAP
        color = tuple(int(c) for c in palette[class_id])
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
    """RGB uint8 grid of ``count`` pipeline samples, each as image | colorized mask, + legend."""
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
    samples = [[image, colorize(label)] for image, label in zip(images, labels, strict=True)]
    return compose_grid(samples, columns=columns, class_ids=np.unique(labels).tolist())


def compose_grid(
    samples: list[list[np.ndarray]], *, columns: int, class_ids: list[int]
) -> np.ndarray:
    """RGB uint8 grid: each sample's tiles side by side (all tiles one size), then a legend of
    ``class_ids``. Used for pipeline previews (image | mask) and evaluations (image | truth |
    prediction)."""
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
    return np.vstack([grid, _legend(class_ids, grid.shape[1])])


def write_preview(voc_root: str | Path, split: str, out: str | Path, **kwargs) -> Path:
    """Write :func:`preview_grid` as a PNG; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(preview_grid(voc_root, split, **kwargs)).save(out)
    return out
