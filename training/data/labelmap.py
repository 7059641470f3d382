"""A dataset's classes: names, colours and ids, from CVAT's ``labelmap.txt`` or VOC's defaults.

CVAT's "Segmentation mask 1.1" export (and Datumaro's VOC layout) names its classes in
``labelmap.txt`` at the dataset root, one per line after a comment, in id order::

    # label:color_rgb:parts:actions
    background:0,0,0::
    floor:128,64,128::

A root without one is VOC: its 21 classes and palette. The run records the labelmap it trained
with, and the exported model carries its names and colours to every consumer.

    labelmap = dataset_labelmap("data/my_floors")      # labelmap.txt, or VOC's
    labelmap.names[1], labelmap.colors[1]               # ('floor', (128, 64, 128))
    ids = labelmap.ids_of_colors(rgb_mask, where="SegmentationClass/a.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.palette import IGNORE_LABEL, VOC_CLASS_NAMES, voc_colormap

LABELMAP_FILE = "labelmap.txt"
LABELMAP_HEADER = "# label:color_rgb:parts:actions"
BOUNDARY_COLOR = (224, 224, 192)
"""VOC's object-border colour: "ignore" (IGNORE_LABEL) in colour masks, as 255 in index masks."""
MAX_CLASSES = IGNORE_LABEL  # ids 0..254: class maps are uint8 and 255 means "ignore"

Color = tuple[int, int, int]


class LabelmapError(ValueError):
    """A labelmap that cannot be used. ``problems`` lists each (``line N: …`` where a line is
    to blame); the message names the file (``source``) and all of them."""

    def __init__(self, source: str | Path, problems: Sequence[str] = ()):
        self.source, self.problems = str(source), list(problems)
        if not self.problems:  # a message alone: LabelmapError("what went wrong")
            super().__init__(self.source)
        elif len(self.problems) == 1:
            joint = ", " if self.problems[0].startswith("line ") else ": "
            super().__init__(f"{self.source}{joint}{self.problems[0]}")
        else:
            listed = "; ".join(self.problems)
            super().__init__(f"{self.source}: {len(self.problems)} problems: {listed}")


@dataclass(frozen=True)
class Labelmap:
    """Class names and RGB colours in id order (id = position)."""

    names: tuple[str, ...]
    colors: tuple[Color, ...]

    def __post_init__(self) -> None:
        names, colors = tuple(self.names), tuple(tuple(int(v) for v in c) for c in self.colors)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        if len(names) != len(colors):
            raise LabelmapError(f"{len(names)} names but {len(colors)} colours")
        if not 1 <= len(names) <= MAX_CLASSES:
            raise LabelmapError(f"expected 1..{MAX_CLASSES} classes, got {len(names)}")
        for what, values in (("name", names), ("colour", colors)):
            seen: dict[object, int] = {}
            for index, value in enumerate(values):
                if value in seen:
                    raise LabelmapError(
                        f"classes {seen[value]} and {index} have the same {what} {value!r}"
                    )
                seen[value] = index
        for name, color in zip(names, colors, strict=True):
            if not name.strip():
                raise LabelmapError("a class has an empty name")
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise LabelmapError(f"class {name!r}: colour {color} is not R,G,B in 0..255")
            if color == BOUNDARY_COLOR:
                raise LabelmapError(
                    f"class {name!r}: colour {color} is VOC's boundary colour, kept for "
                    "'ignore'; choose another"
                )

    @classmethod
    def voc(cls) -> Labelmap:
        """VOC's 21 classes and palette: what a root without labelmap.txt has."""
        palette = voc_colormap()
        return cls(VOC_CLASS_NAMES, tuple(map(tuple, palette[: len(VOC_CLASS_NAMES)].tolist())))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8: the classes' colours at their ids, VOC's boundary colour at 255,
        VOC's colours elsewhere (for palettized PNGs, which hold 256 entries)."""
        palette = voc_colormap()
        palette[: self.num_classes] = self.colors
        palette[IGNORE_LABEL] = BOUNDARY_COLOR
        return palette

    def ids_of_colors(self, rgb: np.ndarray, *, where: str | Path = "mask") -> np.ndarray:
        """H×W uint8 class ids of an H×W×3 colour mask, by exact colour; the boundary colour
        becomes IGNORE_LABEL. A colour not in the labelmap is an error naming ``where``, each
        such colour, how many pixels have it and where it first occurs: never silently
        background."""
        known = ", ".join(f"{n} {c}" for n, c in zip(self.names, self.colors, strict=True))
        return match_colors(
            rgb,
            [*self.colors, BOUNDARY_COLOR],
            [*range(self.num_classes), IGNORE_LABEL],
            where=where,
            known=known,
        )

    def to_text(self) -> str:
        """CVAT's labelmap.txt format."""
        lines = [
            f"{n}:{','.join(map(str, c))}::" for n, c in zip(self.names, self.colors, strict=True)
        ]
        return "\n".join([LABELMAP_HEADER, *lines]) + "\n"


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(code: int) -> Color:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def match_colors(
    rgb: np.ndarray,
    colors: Sequence[Color] | np.ndarray,
    ids: Sequence[int] | np.ndarray,
    *,
    where: str | Path = "mask",
    known: str = "",
) -> np.ndarray:
    """H×W uint8: ``ids[k]`` where a pixel of the H×W×3 ``rgb`` has exactly ``colors[k]``
    (vectorized: one sort, one search). The one colour → id lookup of the project, behind
    :meth:`Labelmap.ids_of_colors` and :func:`training.data.voc.rgb_to_mask`.

    Unknown colours raise ValueError naming ``where``, every unknown colour (most pixels
    first) with its pixel count and first position, and ``known`` (what was expected).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"{where}: expected an H×W×3 colour mask, got shape {rgb.shape}")
    codes = _pack(np.asarray(colors, np.uint8).reshape(-1, 3))
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    pixels = _pack(rgb)
    position = np.clip(np.searchsorted(sorted_codes, pixels), 0, len(codes) - 1)
    unknown = sorted_codes[position] != pixels
    if unknown.any():
        raise ValueError(_unknown_colors_message(pixels, unknown, where, known))
    return np.asarray(ids, np.uint8)[order][position]


def _unknown_colors_message(
    pixels: np.ndarray, unknown: np.ndarray, where: str | Path, known: str
) -> str:
    flat = np.flatnonzero(unknown)
    found, first, counts = np.unique(pixels.ravel()[flat], return_index=True, return_counts=True)
    by_count = np.argsort(-counts, kind="stable")
    width = pixels.shape[1]
    shown = ", ".join(
        f"{_unpack(found[k])} × {counts[k]:,} px (first at row {flat[first[k]] // width}, "
        f"col {flat[first[k]] % width})"
        for k in by_count[:5]
    )
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    expected = f"; known: {known}" if known else ""
    return f"{where}: {len(found)} colour(s) not in the labelmap: {shown}{more}{expected}"


def class_names(names: Sequence[str], num_classes: int) -> list[str]:
    """``num_classes`` names: ``names``' first ones, then ``class_N`` (a --num-classes larger
    than the dataset's, e.g. VOC-layout data with more classes than VOC's 21):
    ``class_names(("background", "floor"), 3)`` is ``["background", "floor", "class_2"]``.
    """
    return list(names[:num_classes]) + [f"class_{i}" for i in range(len(names), num_classes)]


def parse_labelmap(text: str, source: str = LABELMAP_FILE) -> Labelmap:
    """A labelmap from CVAT's text. LabelmapError naming ``source`` and every bad line: lines
    that do not parse, repeated names or colours (with both lines), VOC's boundary colour."""
    names: list[str] = []
    colors: list[Color] = []
    lines: list[int] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.strip().split(":")
        try:
            name = fields[0].strip()
            values = tuple(int(v) for v in fields[1].split(","))
            if len(values) != 3 or not name or not all(0 <= v <= 255 for v in values):
                raise ValueError
        except (IndexError, ValueError):
            problems.append(
                f"line {number}: expected 'name:R,G,B::' (CVAT's labelmap, R,G,B in 0..255), "
                f"got {line.strip()!r}"
            )
            continue
        for what, value, seen in (("name", name, names), ("colour", values, colors)):
            if value in seen:
                first = lines[seen.index(value)]
                problems.append(f"line {number}: {what} {value!r} is already on line {first}")
        if values == BOUNDARY_COLOR:
            problems.append(
                f"line {number}: colour {values} is VOC's boundary colour, kept for 'ignore'; "
                "choose another"
            )
        names.append(name)
        colors.append(values)  # type: ignore[arg-type]
        lines.append(number)
    if not problems:
        try:
            return Labelmap(tuple(names), tuple(colors))
        except LabelmapError as error:  # the class count
            problems.append(str(error))
    raise LabelmapError(source, problems)


def read_labelmap(path: str | Path) -> Labelmap:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # UTF-8, with or without a BOM
    except OSError as error:
        raise LabelmapError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_labelmap(text, str(path))


def write_labelmap(labelmap: Labelmap, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(labelmap.to_text(), encoding="utf-8")
    return path


def dataset_labelmap(root: str | Path) -> Labelmap:
    """The classes of the dataset at ``root``: its labelmap.txt, or VOC's when it has none."""
    path = Path(root) / LABELMAP_FILE
    return read_labelmap(path) if path.is_file() else Labelmap.voc()
