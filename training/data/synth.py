"""Synthetic scenes: a real (if easy) segmentation task that needs no download.

Each scene is a room seen from a small vehicle: a wall and a textured floor, and a few objects
standing on the floor, farther ones smaller and occluded by nearer ones. Every class has its
own silhouette, colour family and surface texture, all jittered per object, so a model has to
use shape and texture, not one colour. Images are JPEG-compressed. Deterministic: sample i
depends only on (seed, i).

What a scene shows and how it is labelled is a :class:`World`:

- **VOC** (:func:`voc_world`): objects of VOC classes on an unlabelled room (background),
  palettized masks with VOC's 255 band on outlines, train/val/trainval lists.
- **Own classes** (:func:`labelmap_world`, :data:`INDOOR`): the classes of a labelmap; the
  floor, the wall and doorways/windows (background) are labelled too; written exactly as
  CVAT exports "Segmentation mask 1.1": RGB colour masks, labelmap.txt, one default.txt.

    write_synthetic_voc("data/synth", count=200, seed=0, size=(480, 360))
    write_synthetic_cvat("data/indoor", count=200, seed=0)  # floor, wall, furniture, …
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from training.data import voc
from training.data.labelmap import LABELMAP_FILE, Labelmap, write_labelmap

Drawer = Callable[[np.ndarray, np.random.Generator, float, float, float], None]
"""draw(mask, rng, cx, bottom_y, height): fill the object's silhouette with 1s in ``mask``."""


def _ellipse(mask, cx, cy, ax, ay, angle=0.0):
    cv2.ellipse(
        mask,
        (round(cx), round(cy)),
        (max(1, round(ax)), max(1, round(ay))),
        angle,
        0,
        360,
        1,
        -1,
        cv2.LINE_AA,
    )


def _rect(mask, x0, y0, x1, y1):
    cv2.rectangle(mask, (round(x0), round(y0)), (round(x1), round(y1)), 1, -1)


def _poly(mask, points):
    cv2.fillPoly(mask, [np.round(np.asarray(points)).astype(np.int32)], 1, cv2.LINE_AA)


def _draw_person(mask, rng, cx, by, h):
    w = h * rng.uniform(0.24, 0.32)
    head = h * 0.13
    _ellipse(mask, cx, by - h + head, head * 0.8, head)
    _rect(mask, cx - w / 2, by - h + 2 * head, cx + w / 2, by - h * 0.45)  # torso
    arm = w * 0.22
    _rect(mask, cx - w / 2 - arm, by - h + 2.2 * head, cx - w / 2, by - h * 0.5)
    _rect(mask, cx + w / 2, by - h + 2.2 * head, cx + w / 2 + arm, by - h * 0.5)
    gap = w * rng.uniform(0.05, 0.15)
    _rect(mask, cx - w / 2, by - h * 0.46, cx - gap, by)  # legs
    _rect(mask, cx + gap, by - h * 0.46, cx + w / 2, by)


def _draw_car(mask, rng, cx, by, h):
    w = h * rng.uniform(1.8, 2.4)
    wheel = h * 0.2
    _rect(mask, cx - w / 2, by - h * 0.62, cx + w / 2, by - wheel)
    cabin_w = w * rng.uniform(0.5, 0.65)
    _poly(
        mask,
        [
            (cx - cabin_w / 2, by - h * 0.6),
            (cx - cabin_w * 0.35, by - h),
            (cx + cabin_w * 0.35, by - h),
            (cx + cabin_w / 2, by - h * 0.6),
        ],
    )
    for side in (-1, 1):
        _ellipse(mask, cx + side * w * 0.3, by - wheel, wheel, wheel)


def _draw_quadruped(mask, rng, cx, by, h, *, ears: bool):
    w = h * rng.uniform(1.4, 1.8)
    leg = h * 0.4
    body_y = by - leg - h * 0.18
    _ellipse(mask, cx, body_y, w * 0.42, h * 0.22)
    direction = rng.choice([-1, 1])
    head_x, head_y = cx + direction * w * 0.45, body_y - h * 0.3
    _ellipse(mask, head_x, head_y, h * 0.17, h * 0.15)
    _poly(
        mask,
        [
            (cx + direction * w * 0.28, body_y - h * 0.1),
            (head_x, head_y - h * 0.05),
            (head_x, head_y + h * 0.12),
            (cx + direction * w * 0.3, body_y + h * 0.1),
        ],
    )
    if ears:
        for side in (-1, 1):
            ex = head_x + side * h * 0.09
            _poly(
                mask,
                [
                    (ex - h * 0.06, head_y - h * 0.08),
                    (ex, head_y - h * 0.3),
                    (ex + h * 0.06, head_y - h * 0.08),
                ],
            )
    else:
        _ellipse(mask, head_x + direction * h * 0.12, head_y + h * 0.05, h * 0.1, h * 0.06)
    for fx in (-0.3, -0.18, 0.18, 0.3):
        x = cx + fx * w
        _rect(mask, x - h * 0.04, body_y, x + h * 0.04, by)
    _poly(
        mask,
        [
            (cx - direction * w * 0.4, body_y - h * 0.05),
            (cx - direction * w * 0.62, body_y - h * 0.35),
            (cx - direction * w * 0.56, body_y - h * 0.38),
            (cx - direction * w * 0.36, body_y + h * 0.04),
        ],
    )


def _draw_dog(mask, rng, cx, by, h):
    _draw_quadruped(mask, rng, cx, by, h, ears=False)


def _draw_cat(mask, rng, cx, by, h):
    _draw_quadruped(mask, rng, cx, by, h, ears=True)


def _draw_chair(mask, rng, cx, by, h):
    w = h * rng.uniform(0.45, 0.6)
    seat_y = by - h * 0.45
    leg = w * 0.09
    _rect(mask, cx - w / 2, seat_y - h * 0.07, cx + w / 2, seat_y)
    _rect(mask, cx - w / 2, by - h, cx - w / 2 + w * 0.16, seat_y)  # back post
    _rect(mask, cx - w / 2, by - h, cx + w / 2 - w * 0.1, by - h * 0.85)  # back rail
    for x in (cx - w / 2, cx + w / 2 - leg, cx - w / 4, cx + w / 4 - leg):
        _rect(mask, x, seat_y, x + leg, by)


def _draw_bottle(mask, rng, cx, by, h):
    w = h * rng.uniform(0.25, 0.33)
    _rect(mask, cx - w / 2, by - h * 0.65, cx + w / 2, by)
    _ellipse(mask, cx, by - h * 0.65, w / 2, h * 0.08)
    _rect(mask, cx - w * 0.17, by - h, cx + w * 0.17, by - h * 0.65)


def _draw_pottedplant(mask, rng, cx, by, h):
    w = h * rng.uniform(0.35, 0.45)
    _poly(
        mask,
        [
            (cx - w / 2, by - h * 0.35),
            (cx + w / 2, by - h * 0.35),
            (cx + w * 0.35, by),
            (cx - w * 0.35, by),
        ],
    )
    for _ in range(int(rng.integers(4, 8))):
        angle = rng.uniform(-70, 70)
        length = h * rng.uniform(0.25, 0.4)
        rad = np.deg2rad(angle - 90)
        lx, ly = cx + np.cos(rad) * length * 0.8, by - h * 0.35 + np.sin(rad) * length * 0.8
        _ellipse(mask, lx, ly, length * 0.5, length * 0.16, angle - 90)


def _draw_tvmonitor(mask, rng, cx, by, h):
    w = h * rng.uniform(1.2, 1.6)
    _rect(mask, cx - w / 2, by - h, cx + w / 2, by - h * 0.22)
    _rect(mask, cx - w * 0.06, by - h * 0.22, cx + w * 0.06, by - h * 0.08)
    _rect(mask, cx - w * 0.25, by - h * 0.08, cx + w * 0.25, by)


def _draw_bicycle(mask, rng, cx, by, h):
    r = h * 0.3
    thickness = max(1, round(h * 0.05))
    for side in (-1, 1):
        cv2.circle(
            mask, (round(cx + side * r * 1.2), round(by - r)), round(r), 1, thickness, cv2.LINE_AA
        )
    frame = np.array(
        [
            (cx - r * 1.2, by - r),
            (cx, by - r),
            (cx + r * 0.5, by - h * 0.75),
            (cx - r * 0.4, by - h * 0.75),
            (cx, by - r),
            (cx + r * 1.2, by - r),
            (cx + r * 0.5, by - h * 0.75),
            (cx + r * 0.7, by - h),
        ]
    )
    cv2.polylines(mask, [np.round(frame).astype(np.int32)], False, 1, thickness, cv2.LINE_AA)


def _draw_table(mask, rng, cx, by, h):
    w = h * rng.uniform(1.3, 1.9)
    leg = w * 0.06
    _rect(mask, cx - w / 2, by - h, cx + w / 2, by - h * 0.88)  # top
    for x in (cx - w / 2 + leg, cx + w / 2 - 2 * leg):
        _rect(mask, x, by - h * 0.9, x + leg, by)


def _draw_cabinet(mask, rng, cx, by, h):
    w = h * rng.uniform(0.6, 1.2)
    _rect(mask, cx - w / 2, by - h, cx + w / 2, by - h * 0.05)
    for x in (cx - w / 2, cx + w / 2 - w * 0.08):  # feet
        _rect(mask, x, by - h * 0.06, x + w * 0.08, by)


def _draw_sofa(mask, rng, cx, by, h):
    w = h * rng.uniform(2.0, 2.8)
    _rect(mask, cx - w / 2, by - h, cx + w / 2, by - h * 0.45)  # back
    _rect(mask, cx - w / 2 - w * 0.04, by - h * 0.6, cx + w / 2 + w * 0.04, by - h * 0.1)
    for x in (cx - w / 2, cx + w / 2 - w * 0.05):  # feet
        _rect(mask, x, by - h * 0.12, x + w * 0.05, by)


def _draw_furniture(mask, rng, cx, by, h):
    drawers = (_draw_chair, _draw_table, _draw_cabinet, _draw_sofa)
    drawers[int(rng.integers(len(drawers)))](mask, rng, cx, by, h)


def _draw_pet(mask, rng, cx, by, h):
    _draw_quadruped(mask, rng, cx, by, h, ears=bool(rng.uniform() < 0.5))


def _draw_box(mask, rng, cx, by, h):
    w = h * rng.uniform(0.8, 1.6)
    _rect(mask, cx - w / 2, by - h, cx + w / 2, by)


def _draw_ball(mask, rng, cx, by, h):
    _ellipse(mask, cx, by - h / 2, h / 2, h / 2)


def _draw_clutter(mask, rng, cx, by, h):
    drawers = (_draw_box, _draw_ball, _draw_bottle, _draw_pottedplant)
    drawers[int(rng.integers(len(drawers)))](mask, rng, cx, by, h)


@dataclass(frozen=True)
class ClassStyle:
    """How one class looks: silhouette, colour family (HSV) and surface texture."""

    name: str
    draw: Drawer
    hue: float  # 0–1
    saturation: float
    value: float
    texture: str  # stripes | checker | dots | noise | plain
    height: tuple[float, float]  # object height as a share of the image height when nearest


STYLES: dict[str, ClassStyle] = {
    s.name: s
    for s in (
        ClassStyle("person", _draw_person, 0.58, 0.55, 0.7, "stripes", (0.55, 0.9)),
        ClassStyle("car", _draw_car, 0.0, 0.8, 0.75, "plain", (0.3, 0.45)),
        ClassStyle("dog", _draw_dog, 0.08, 0.6, 0.55, "noise", (0.3, 0.45)),
        ClassStyle("cat", _draw_cat, 0.12, 0.25, 0.6, "stripes", (0.22, 0.35)),
        ClassStyle("chair", _draw_chair, 0.07, 0.7, 0.4, "checker", (0.4, 0.6)),
        ClassStyle("bottle", _draw_bottle, 0.36, 0.7, 0.5, "plain", (0.2, 0.35)),
        ClassStyle("pottedplant", _draw_pottedplant, 0.3, 0.75, 0.55, "dots", (0.35, 0.55)),
        ClassStyle("tvmonitor", _draw_tvmonitor, 0.66, 0.2, 0.2, "plain", (0.3, 0.45)),
        ClassStyle("bicycle", _draw_bicycle, 0.83, 0.7, 0.65, "plain", (0.35, 0.5)),
    )
}
DEFAULT_CLASSES = ("person", "car", "dog", "chair", "bottle", "pottedplant")
VOC_VAL_FRACTION = 0.2
"""Share of a synthetic VOC root's ids that :func:`write_synthetic_voc` lists in val.txt."""
INDOOR_STYLES: dict[str, ClassStyle] = {
    s.name: s
    for s in (
        ClassStyle("furniture", _draw_furniture, 0.07, 0.55, 0.45, "checker", (0.4, 0.65)),
        ClassStyle("pet", _draw_pet, 0.09, 0.5, 0.5, "noise", (0.22, 0.38)),
        ClassStyle("clutter", _draw_clutter, 0.93, 0.75, 0.7, "dots", (0.1, 0.22)),
    )
}
OBJECT_STYLES = {**STYLES, **INDOOR_STYLES}
"""Every class a synthetic scene can show as an object, by name (a labelmap's names pick)."""
SURFACES = ("background", "floor", "wall")
"""Classes of a labelmap drawn as the room itself, not as objects."""

INDOOR_LABELMAP = Labelmap(
    ("background", "floor", "wall", "furniture", "person", "pet", "clutter"),
    (
        (0, 0, 0),  # CVAT writes "background:0,0,0::" first
        (128, 64, 128),
        (102, 102, 156),
        (190, 153, 153),
        (220, 20, 60),
        (250, 170, 30),
        (0, 0, 142),
    ),
)
"""An indoor RC world: the floor the car drives on, walls, and what stands on the floor."""


@dataclass(frozen=True)
class World:
    """What synthetic scenes show and how they are labelled: the classes (a labelmap), those
    drawn as objects on the floor, the ids of the room's floor and wall, whether the wall has
    doorways and windows (labelled ``opening``), and whether outlines carry VOC's 255 band."""

    labelmap: Labelmap
    objects: tuple[str, ...]
    floor: int = 0
    wall: int = 0
    opening: int | None = None
    outline_band: bool = True


def voc_world(classes: Sequence[str] = DEFAULT_CLASSES) -> World:
    """VOC's scenes: objects of ``classes`` in an unlabelled room, 255 bands on outlines."""
    unknown = [c for c in classes if c not in STYLES]
    if unknown:
        raise ValueError(f"no synthetic style for {unknown}; choose from {sorted(STYLES)}")
    return World(Labelmap.voc(), tuple(classes))


def labelmap_world(labelmap: Labelmap) -> World:
    """Scenes of a labelmap's classes, labelled as a CVAT annotator would: ``floor`` and
    ``wall`` (or ``background`` where the labelmap lacks them), doorways and windows as
    ``background``, objects of every other class; no ignore band. The other classes need a
    style (:data:`OBJECT_STYLES`): ValueError names those without."""
    names = labelmap.names
    objects = tuple(n for n in names if n not in SURFACES)
    unknown = [n for n in objects if n not in OBJECT_STYLES]
    if unknown:
        raise ValueError(
            f"no synthetic style for {unknown}; a labelmap for synth may name "
            f"{', '.join(SURFACES)} and {', '.join(sorted(OBJECT_STYLES))}"
        )
    if not objects:
        raise ValueError(f"the labelmap names no object class, only {list(names)}")
    background = names.index("background") if "background" in names else None
    surfaces = {s: names.index(s) if s in names else background for s in ("floor", "wall")}
    missing = [s for s, i in surfaces.items() if i is None]
    if missing:
        raise ValueError(f"the labelmap names neither {' nor '.join(missing)} nor background")
    return World(
        labelmap, objects, surfaces["floor"], surfaces["wall"], background, outline_band=False
    )


INDOOR = labelmap_world(INDOOR_LABELMAP)
WORLDS: dict[str, Labelmap] = {"indoor": INDOOR_LABELMAP}
"""Named labelmaps of own-class worlds (``data synth --classes indoor``)."""


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, np.clip(s, 0, 1), np.clip(v, 0, 1))) * 255


def _texture(kind: str, shape: tuple[int, int], rng: np.random.Generator, scale: float):
    """A multiplicative brightness pattern around 1.0."""
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    period = max(3.0, scale * rng.uniform(0.08, 0.15))
    angle = rng.uniform(0, np.pi)
    if kind == "stripes":
        u = xs * np.cos(angle) + ys * np.sin(angle)
        return 1.0 + 0.25 * np.sign(np.sin(2 * np.pi * u / period))
    if kind == "checker":
        return 1.0 + 0.2 * ((xs // period + ys // period) % 2 * 2 - 1)
    if kind == "dots":
        d = np.hypot((xs % period) - period / 2, (ys % period) - period / 2)
        return np.where(d < period * 0.25, 1.35, 1.0)
    if kind == "noise":
        small = rng.normal(0, 0.15, (max(2, shape[0] // 6), max(2, shape[1] // 6)))
        return 1.0 + cv2.resize(
            small.astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC
        )
    return np.ones(shape, np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, int]:
    """Wall with a lighting gradient above a textured floor (planks or tiles) in perspective."""
    horizon = int(height * rng.uniform(0.3, 0.5))
    image = np.empty((height, width, 3), np.float32)
    wall = _hsv(rng.uniform(), rng.uniform(0.05, 0.5), rng.uniform(0.5, 0.95))
    light = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.9, 1.15), width)[None, :, None]
    image[:horizon] = wall * light
    floor = _hsv(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.8))
    ys, xs = np.mgrid[horizon:height, :width].astype(np.float32)
    depth = (ys - horizon + 1) / (height - horizon)  # 0 at the horizon, 1 at the bottom
    u = (xs - width / 2) / np.maximum(depth, 0.05)  # perspective: lines converge
    v = 1.0 / np.maximum(depth, 0.05)
    if rng.uniform() < 0.5:  # planks
        pattern = 1.0 + 0.12 * np.sign(np.sin(u / rng.uniform(20, 40)))
    else:  # tiles
        t = rng.uniform(30, 60)
        pattern = 1.0 + 0.15 * ((u // t + (v * 8) // 1) % 2 * 2 - 1)
    image[horizon:] = floor * pattern[..., None] * (0.7 + 0.3 * depth[..., None])
    image[horizon - 2 : horizon + 1] *= 0.6  # skirting line
    return image, horizon


def _openings(
    rng: np.random.Generator, image: np.ndarray, label: np.ndarray, horizon: int, opening: int
) -> None:
    """Up to two doorways (down to the floor) or windows in the wall: another room or the
    sky behind them, labelled ``opening``."""
    width = image.shape[1]
    for _ in range(int(rng.integers(0, 3))):
        w = width * rng.uniform(0.1, 0.2)
        x0 = rng.uniform(0, width - w)
        if rng.uniform() < 0.5:  # doorway
            y0, y1 = horizon * rng.uniform(0.05, 0.3), horizon
        else:  # window
            y0 = horizon * rng.uniform(0.1, 0.3)
            y1 = y0 + horizon * rng.uniform(0.3, 0.5)
        top, bottom, left, right = round(y0), round(y1), round(x0), round(x0 + w)
        if bottom - top < 2 or right - left < 2:
            continue
        inside = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.9))
        fade = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), bottom - top)
        image[top:bottom, left:right] = inside * fade[:, None, None]
        label[top:bottom, left:right] = opening


def draw_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    classes: Sequence[str] = DEFAULT_CLASSES,
    objects: tuple[int, int] = (2, 5),
    *,
    world: World | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its uint8 label map: ids of ``world``'s labelmap (default: VOC
    with objects of ``classes``: 0 background, 255 outline band)."""
    world = world or voc_world(classes)
    names = world.labelmap.names
    image, horizon = _background(rng, width, height)
    label = np.zeros((height, width), np.uint8)
    label[:horizon], label[horizon:] = world.wall, world.floor
    if world.opening is not None:
        _openings(rng, image, label, horizon, world.opening)
    count = int(rng.integers(objects[0], objects[1] + 1))
    bottoms = np.sort(rng.uniform(horizon + 0.1 * (height - horizon), height * 1.02, count))
    for bottom in bottoms:  # far to near, so nearer objects occlude farther ones
        style = OBJECT_STYLES[world.objects[int(rng.integers(len(world.objects)))]]
        depth = (bottom - horizon) / (height - horizon)
        size = height * rng.uniform(*style.height) * (0.35 + 0.65 * depth)
        cx = rng.uniform(0.05, 0.95) * width
        mask = np.zeros((height, width), np.uint8)
        style.draw(mask, rng, cx, bottom, size)
        region = mask > 0
        if not region.any():
            continue
        color = _hsv(
            style.hue + rng.normal(0, 0.03),
            style.saturation + rng.normal(0, 0.1),
            style.value + rng.normal(0, 0.1),
        )
        texture = _texture(style.texture, (height, width), rng, size)
        shade = np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), height)[:, None]
        image[region] = color * (texture * shade)[region][:, None]
        label[region] = names.index(style.name)
    if world.outline_band:  # VOC draws a ~5 px "don't care" band on every object outline.
        kernel = np.ones((5, 5), np.uint8)
        outline = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
        label[outline] = voc.IGNORE_LABEL
    image = cv2.GaussianBlur(image, (3, 3), 0.7)
    image += rng.normal(0, 4.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """One street-like RGB uint8 frame (for warmup records and export checks: realistic
    content and JPEG sizes, unlike noise or a flat image)."""
    return draw_scene(np.random.default_rng(seed), width, height)[0]


def write_synthetic_voc(
    out: str | Path,
    *,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (480, 360),
    classes: Sequence[str] = DEFAULT_CLASSES,
    val_fraction: float = VOC_VAL_FRACTION,
) -> Path:
    """Write ``count`` scenes in exact VOC layout under ``out``; returns ``out``.

    The last ``val_fraction`` of the ids form val.txt, the rest train.txt; trainval.txt has all.
    """
    world = voc_world(classes)
    if count < 2:
        raise ValueError(f"--count must be at least 2 (one train and one val), got {count}")
    out = Path(out)
    ids = [f"synth_{i:06d}" for i in range(count)]
    _write_samples(out, ids, seed, size, world, voc.write_mask)
    n_val = min(count - 1, max(1, round(count * val_fraction)))
    _write_lists(out, {"train": ids[: count - n_val], "val": ids[count - n_val :], "trainval": ids})
    return out


def write_synthetic_cvat(
    out: str | Path,
    *,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (480, 360),
    labelmap: Labelmap = INDOOR_LABELMAP,
) -> Path:
    """Write ``count`` scenes of ``labelmap``'s classes (:func:`labelmap_world`) as CVAT
    exports "Segmentation mask 1.1" under ``out``; returns ``out``::

        labelmap.txt  ImageSets/Segmentation/default.txt  JPEGImages/<id>.jpg
        SegmentationClass/<id>.png   (RGB, the labelmap's colours)

    One list, as CVAT writes for a task without subsets: train, val and test are split from
    it when read (:func:`training.data.voc.resolve_split`), so ``count`` must be at least 3.
    """
    world = labelmap_world(labelmap)
    if count < 3:
        raise ValueError(f"--count must be at least 3 (one train, val and test id), got {count}")
    out = Path(out)
    palette = labelmap.palette()

    def write_colour_mask(label: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(palette[label]).save(path, optimize=True)

    ids = [f"frame_{i:06d}" for i in range(count)]
    _write_samples(out, ids, seed, size, world, write_colour_mask)
    write_labelmap(labelmap, out / LABELMAP_FILE)
    _write_lists(out, {"default": ids})
    return out


def _write_samples(
    out: Path,
    ids: Sequence[str],
    seed: int,
    size: tuple[int, int],
    world: World,
    write_mask: Callable[[np.ndarray, Path], None],
) -> None:
    """Scene i of ``world`` as ``JPEGImages/<ids[i]>.jpg`` and its mask by ``write_mask``."""
    width, height = size
    (out / voc.IMAGE_DIR).mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        rng = np.random.default_rng([seed, index])
        image, label = draw_scene(rng, width, height, world=world)
        quality = int(rng.integers(70, 96))
        ok, jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok, "OpenCV failed to encode a JPEG"
        (out / voc.IMAGE_DIR / f"{ids[index]}.jpg").write_bytes(jpeg.tobytes())
        write_mask(label, voc.mask_path(out, ids[index]))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(len(ids))))


def _write_lists(out: Path, lists: dict[str, Sequence[str]]) -> None:
    for name, members in lists.items():
        path = voc.split_list_path(out, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(members) + "\n")
