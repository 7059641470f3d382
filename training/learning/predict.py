"""Segment one image with a run's best weights and write the colorized overlay.

    predict_image("runs/voc", "street.jpg", "street_overlay.png")

The same inference graph as the exported model (``training.model.inference_graph``): the network
sees the image at the export's size (``resize``), logits are resized back to the image before
the argmax, so the overlay lines up with the original pixels and matches what a server says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from client.contract import CLASS_MAP
from client.palette import colorize
from training.learning.run_folder import RunFolder
from training.model.inference_graph import segment_frames

OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")


def overlay(image: np.ndarray, class_map: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """RGB uint8 image blended with the VOC colours of ``class_map`` (background left as is)."""
    colors = colorize(class_map).astype(np.float32)
    blended = image.astype(np.float32) * (1 - alpha) + colors * alpha
    foreground = (class_map != 0)[..., None]
    return np.where(foreground, blended, image).round().astype(np.uint8)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 [H,W,3]; a clear error for anything that is not an image."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error


def predict_image(
    run_dir: str | Path, image_path: str | Path, out: str | Path, *, resize: str = "aspect"
) -> tuple[np.ndarray, Path]:
    """Writes the overlay PNG; returns the class map (uint8 [H,W]) and the PNG's path."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {out}: expected a file ending in {', '.join(OUTPUT_SUFFIXES)}")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder, expected an image file name")
    run = RunFolder(run_dir)
    config = run.read_config()
    image = read_rgb(image_path)
    model = run.load_model()
    outputs = segment_frames(
        lambda x: model(x, training=False),
        tf.constant(image[None]),
        input_size=config.input_size,
        output_stride=config.output_stride,
        resize=resize,
    )
    class_map = outputs[CLASS_MAP][0].numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, class_map)).save(out)
    return class_map, out
