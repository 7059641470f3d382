"""Draw class maps over camera frames so people can look at what the model sees.

The server returns an H×W class map; these helpers blend its colours over the frame, add a
legend of the classes present, and put original and overlay next to each other:

    >>> frame = np.full((4, 6, 3), 100, np.uint8)  # a BGR frame, as OpenCV reads it
    >>> class_map = np.zeros((4, 6), np.uint8)
    >>> class_map[1:3, 2:4] = 15  # person
    >>> shown = overlay(frame, class_map, alpha=0.5)
    >>> shown[0, 0].tolist(), shown[1, 2].tolist()  # background untouched; person BGR (128,128,192)
    ([100, 100, 100], [114, 114, 146])
    >>> ids = present_classes(class_map)
    >>> ids
    [15]
    >>> side_by_side(frame, draw_legend(shown, ids, VOC_CLASS_NAMES)).shape
    (4, 12, 3)

Palettes are RGB, like the VOC masks and the model's metadata; frames from OpenCV are BGR,
so every function takes `color="bgr"` (default) or `"rgb"` and flips the palette to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from client.palette import VOC_CLASS_NAMES, ColorOrder, colorize, voc_colormap

__all__ = ["VOC_CLASS_NAMES", "draw_legend", "overlay", "present_classes", "side_by_side"]


def _palette_in(color: str, palette: np.ndarray | None) -> np.ndarray:
    """The RGB palette (VOC by default) reordered to the frame's colour order."""
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    palette = voc_colormap() if palette is None else np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8:
        raise ValueError(
            f"palette must be a [C,3] uint8 RGB array, got {palette.dtype} {palette.shape}"
        )
    return palette[:, ::-1] if color == "bgr" else palette


def _check_image(image: np.ndarray, name: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be an H×W×3 uint8 image, got {image.dtype} {image.shape}")


def overlay(
    frame: np.ndarray,
    class_map: np.ndarray,
    alpha: float = 0.5,
    *,
    palette: np.ndarray | None = None,
    color: ColorOrder = "bgr",
    background: int | None = 0,
) -> np.ndarray:
    """Blend the colourized class map over the frame: `(1 - alpha) * frame + alpha * colour`.

    Pixels of class `background` keep the frame's values so the scene stays visible
    (`background=None` blends every pixel). Returns a new uint8 image in the frame's colour
    order; values are rounded to the nearest integer.
    """
    frame, class_map = np.asarray(frame), np.asarray(class_map)
    _check_image(frame, "frame")
    if class_map.shape != frame.shape[:2] or not np.issubdtype(class_map.dtype, np.integer):
        raise ValueError(
            f"class_map must be an integer array of shape {frame.shape[:2]} (the frame's H×W), "
            f"got {class_map.dtype} {class_map.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = colorize(class_map, _palette_in(color, palette))
    # addWeighted rounds and saturates in one pass, without a float copy of a 1080p frame.
    blended = cv2.addWeighted(frame, 1.0 - alpha, np.ascontiguousarray(colors), alpha, 0.0)
    if background is None:
        return blended
    return np.where((class_map == background)[..., None], frame, blended)


def present_classes(class_map: np.ndarray, ignore: Sequence[int] = (0,)) -> list[int]:
    """Sorted class ids that occur in the class map, without those in `ignore` (background)."""
    ids = np.unique(np.asarray(class_map))
    return [int(i) for i in ids if int(i) not in ignore]


def draw_legend(
    image: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    *,
    palette: np.ndarray | None = None,
    color: ColorOrder = "bgr",
) -> np.ndarray:
    """A copy of the image with a legend in the top-left corner: a swatch and a name per id.

    Pass `present_classes(class_map)` as `class_ids` to list only what the frame shows. Text
    size follows the image height, so the legend reads the same on a 240p and a 1080p frame.
    """
    image = np.asarray(image)
    _check_image(image, "image")
    palette = _palette_in(color, palette)
    out = image.copy()
    if len(class_ids) == 0:
        return out
    for class_id in class_ids:
        if not 0 <= class_id < min(len(class_names), len(palette)):
            raise ValueError(
                f"class id {class_id} has no name or colour: {len(class_names)} names, "
                f"{len(palette)} palette colours"
            )

    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.3, image.shape[0] / 1200)  # 0.9 at 1080p; never below legible size
    thickness = max(1, round(scale * 2))
    (_, text_h), baseline = cv2.getTextSize("Ag", font, scale, thickness)
    row_h = text_h + baseline + 4
    pad = max(2, row_h // 4)
    names = [str(class_names[i]) for i in class_ids]
    text_w = max(cv2.getTextSize(n, font, scale, thickness)[0][0] for n in names)
    swatch = text_h + baseline

    # A dark box behind the rows keeps white text readable on bright scenes.
    box_w = pad + swatch + pad + text_w + pad
    cv2.rectangle(out, (0, 0), (box_w, pad + row_h * len(names)), (32, 32, 32), cv2.FILLED)
    for row, (class_id, name) in enumerate(zip(class_ids, names, strict=True)):
        top = pad + row * row_h
        swatch_color = tuple(int(c) for c in palette[class_id])
        cv2.rectangle(out, (pad, top), (pad + swatch, top + swatch), swatch_color, cv2.FILLED)
        origin = (pad + swatch + pad, top + text_h)
        cv2.putText(out, name, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`left` and `right` next to each other; `right` is resized to `left`'s height if needed.

    Used to show the original frame beside its overlay. The aspect ratio of `right` is kept.
    """
    left, right = np.asarray(left), np.asarray(right)
    if left.dtype != right.dtype or left.shape[2:] != right.shape[2:] or left.ndim != right.ndim:
        raise ValueError(
            f"images must have the same dtype and channels, got {left.dtype} {left.shape} "
            f"and {right.dtype} {right.shape}"
        )
    height = left.shape[0]
    if right.shape[0] != height:
        width = max(1, round(right.shape[1] * height / right.shape[0]))
        right = cv2.resize(right, (width, height), interpolation=cv2.INTER_AREA)
        right = right.reshape(height, width, *left.shape[2:])  # resize drops a 1-channel axis
    return np.concatenate([left, right], axis=1)
