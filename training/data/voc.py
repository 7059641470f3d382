"""The VOC layout (VOC 2012, and CVAT's "Segmentation mask 1.1" export): paths, class ids,
palettized masks and splits.

A root holds ``JPEGImages/<id>.jpg`` (or ``.png``), ``SegmentationClass/<id>.png`` and
``ImageSets/Segmentation/<list>.txt``; a CVAT export adds ``labelmap.txt``
(:mod:`training.data.labelmap`) and often has one list, ``default.txt``. Masks in every form
(palettized, index, colour) are read by :mod:`training.data.masks`.

    mask = read_mask("VOC2012/SegmentationClass/2007_000032.png")  # uint8 ids, 255 = border
    ids = resolve_split("VOC2012", "test")  # second half of val.txt, seed 4321
    ids = resolve_split("my_cvat_export", "val")  # 15 % of default.txt, chosen by seed
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from client.palette import IGNORE_LABEL, VOC_CLASS_NAMES, voc_colormap
from training.data.labelmap import match_colors

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_VAL_FRACTION",
    "IGNORE_LABEL",
    "NUM_CLASSES",
    "VOC_CLASS_NAMES",
    "RepeatedIdsError",
    "class_names",
    "find_image",
    "image_candidates",
    "image_path",
    "mask_path",
    "missing_image_message",
    "read_mask",
    "read_split_list",
    "resolve_split",
    "rgb_to_mask",
    "split_list_names",
    "split_list_path",
    "split_single_list",
    "voc_colormap",
    "write_mask",
    "write_split_lists",
]

NUM_CLASSES = len(VOC_CLASS_NAMES)
class_names: tuple[str, ...] = VOC_CLASS_NAMES
DEFAULT_SPLIT_SEED = 4321
"""Seed of the shuffle that halves val.txt into val and test (the book's value), and of the
split of a root's single list."""
DEFAULT_VAL_FRACTION = 0.15
"""Share of a root's single list (CVAT's default.txt) that becomes val."""
DEFAULT_TEST_FRACTION = 0.15
"""Share of a root's single list that becomes test; the rest is train."""
SPLITS = ("train", "val", "test")

IMAGE_DIR = "JPEGImages"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
"""Image files looked for, in this order: VOC's JPEGs, then the PNG frames CVAT exports too."""
MASK_DIR = "SegmentationClass"
SPLIT_DIR = Path("ImageSets") / "Segmentation"


def image_candidates(root: str | Path, sample_id: str) -> list[Path]:
    """Where an id's image may be, in the order looked at (:data:`IMAGE_SUFFIXES`)."""
    return [Path(root) / IMAGE_DIR / f"{sample_id}{suffix}" for suffix in IMAGE_SUFFIXES]


def image_path(root: str | Path, sample_id: str) -> Path:
    """The id's image: the first of :func:`image_candidates` that exists, else where VOC
    keeps it (``<id>.jpg``, also where new images are written). The one place images are
    found: the pipeline, the checks and the export's verification all call it."""
    candidates = image_candidates(root, sample_id)
    return next((path for path in candidates if path.is_file()), candidates[0])


def find_image(root: str | Path, sample_id: str) -> Path:
    """The id's image; FileNotFoundError naming the id and every path looked for."""
    path = image_path(root, sample_id)
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: {missing_image_message(root, sample_id)}")
    return path


def missing_image_message(root: str | Path, sample_id: str) -> str:
    """What :func:`find_image` and the checks say of an id without an image."""
    tried = ", ".join(p.name for p in image_candidates(root, sample_id))
    return f"image missing for id {sample_id!r}: looked for {tried}"


def mask_path(root: str | Path, sample_id: str) -> Path:
    return Path(root) / MASK_DIR / f"{sample_id}.png"


def split_list_path(root: str | Path, list_name: str) -> Path:
    return Path(root) / SPLIT_DIR / f"{list_name}.txt"


def read_mask(path: str | Path) -> np.ndarray:
    """Read a VOC mask as an H×W uint8 array of class ids (the palette indices, never RGB).

    Palettized (mode P) masks are VOC's format; single-channel (mode L) index masks are
    accepted too. An RGB mask is refused: colour masks mean something only through a
    labelmap, which :func:`training.data.masks.read_class_ids` applies.
    """
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(
                f"{path}: mask must be palettized (mode P) or single-channel (mode L), "
                f"got mode {image.mode}; read colour masks with "
                "training.data.masks.read_class_ids"
            )
        return np.asarray(image, dtype=np.uint8).copy()


def write_mask(mask: np.ndarray, path: str | Path, palette: np.ndarray | None = None) -> None:
    """Write class ids as a palettized PNG, with the VOC palette as VOC's own masks are, or
    ``palette`` ((256, 3) uint8, e.g. ``Labelmap.palette()`` for a dataset of own classes)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{path}: mask must be a 2-D uint8 array, got {mask.dtype} {mask.shape}")
    palette = voc_colormap() if palette is None else np.asarray(palette, np.uint8)
    image = Image.fromarray(mask, mode="P")
    image.putpalette(palette.tobytes())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def rgb_to_mask(rgb: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Turn an H×W×3 colour-coded mask into H×W ids: the index of each pixel's colour in
    ``palette`` (VOC's 256 colours by default, so VOC's boundary colour gives 255).

    The lookup is :func:`training.data.labelmap.match_colors`, the one every colour mask goes
    through; unknown colours raise ValueError naming each, its pixel count and position.
    A dataset's colour masks are read with its labelmap: :meth:`Labelmap.ids_of_colors`.
    """
    palette = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8)
    if not 1 <= len(palette.reshape(-1, 3)) <= 256:
        raise ValueError(f"palette must hold 1..256 colours, got {len(palette.reshape(-1, 3))}")
    if len(np.unique(palette.reshape(-1, 3), axis=0)) != len(palette.reshape(-1, 3)):
        raise ValueError("palette has repeated colours; colour → id is ambiguous")
    return match_colors(
        rgb, palette, np.arange(len(palette)), known=f"the {len(palette)} palette colours"
    )


def split_list_names(root: str | Path) -> list[str]:
    """Names of the split lists a root has (``train``, ``val``, …), sorted."""
    split_dir = Path(root) / SPLIT_DIR
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} does not exist: not a VOC-format root")
    return sorted(p.stem for p in split_dir.glob("*.txt"))


class RepeatedIdsError(ValueError):
    """A split list names some ids more than once: ``repeats`` maps each to its line numbers,
    ``ids`` holds every id once (first occurrences, in file order) for checks that go on."""

    SHOWN = 5

    def __init__(self, path: Path, ids: list[str], repeats: dict[str, list[int]]):
        self.path, self.ids, self.repeats = path, ids, repeats
        shown = [
            f"{name} (lines {', '.join(map(str, lines))})"
            for name, lines in list(repeats.items())[: self.SHOWN]
        ]
        more = f" and {len(repeats) - self.SHOWN} more" if len(repeats) > self.SHOWN else ""
        super().__init__(
            f"{path}: split list repeats {len(repeats)} id(s): {'; '.join(shown)}{more}; "
            "list each id once"
        )


def read_split_list(path: str | Path) -> list[str]:
    """Ids of a split list file, one per line, in file order (blank lines ignored);
    RepeatedIdsError naming the ids listed twice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist")
    lines: dict[str, list[int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            lines.setdefault(line.strip(), []).append(number)
    repeats = {name: numbers for name, numbers in lines.items() if len(numbers) > 1}
    if repeats:
        raise RepeatedIdsError(path, list(lines), repeats)
    return list(lines)


def resolve_split(
    root: str | Path,
    split: str,
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> list[str]:
    """Ids of a split. The rule, by the lists the root's ``ImageSets/Segmentation`` holds:

    - **One list not named train, val or test** (CVAT's ``default.txt``, or any other single
      name): ``train``, ``val`` and ``test`` are a seeded split of it
      (:func:`split_single_list`: ``val_fraction`` and ``test_fraction`` of it, the rest
      train). Asking for the list by its own name gives all of it.
    - **VOC** (train.txt, val.txt, …): ``train`` is train.txt; ``val`` and ``test`` are the
      first and second halves of val.txt shuffled with ``seed`` (its own generator, so global
      random state cannot move them), or val.txt and test.txt as they are when test.txt
      exists with a mask for every id (VOC's own test.txt, from the test download, has none).
      With the official lists: 1464 / 724 / 725. The fractions play no part here.
    - Any other name is read from ``<name>.txt`` as is. A missing list is FileNotFoundError
      naming it and the lists the root has. (A root with train.txt alone has no val: its
      ids are never split silently into sets that would overlap train.txt.)
    """
    names = split_list_names(root) if (Path(root) / SPLIT_DIR).is_dir() else []
    if len(names) == 1 and names[0] not in SPLITS and split in SPLITS:
        source = split_list_path(root, names[0])
        parts = split_single_list(
            read_split_list(source),
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            source=source,
        )
        return parts[split]
    if split in ("val", "test") and not _labelled_list(root, "test", names):
        val_ids = _read_named_list(root, "val", names)
        shuffled = [val_ids[i] for i in np.random.default_rng(seed).permutation(len(val_ids))]
        half = len(shuffled) // 2
        return shuffled[:half] if split == "val" else shuffled[half:]
    return _read_named_list(root, split, names)


def _labelled_list(root: str | Path, name: str, names: list[str]) -> bool:
    """True if list ``name`` exists and every id of it has a mask."""
    if name not in names:
        return False
    ids = read_split_list(split_list_path(root, name))
    return bool(ids) and all(mask_path(root, sample_id).is_file() for sample_id in ids)


def _read_named_list(root: str | Path, name: str, names: list[str]) -> list[str]:
    path = split_list_path(root, name)
    if not path.is_file():
        here = ", ".join(f"{n}.txt" for n in names) or "none"
        hint = ""
        if names in (["train"], ["val"], ["test"]) and name in SPLITS:
            hint = f"; to split {names[0]}.txt into train, val and test, rename it default.txt"
        raise FileNotFoundError(f"split list {path} does not exist (lists here: {here}){hint}")
    return read_split_list(path)


def split_single_list(
    ids: Sequence[str],
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    source: str | Path = "the list",
) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` → disjoint id lists covering ``ids``, each in list order.

    Each id's part comes from a hash of ``(seed, id)`` alone, read as a number in [0, 1): val
    below ``val_fraction``, test below ``val_fraction + test_fraction``, train above. So the
    parts do not depend on the list's order or length, and adding frames to an export never
    moves an id already listed to another part (a test frame never quietly becomes a training
    frame); the parts' sizes follow the fractions closely on large lists, not exactly. In a
    list so small that a part with a fraction above 0 would be empty, it takes the id of the
    largest part nearest its range. Too few ids for three parts is ValueError naming the
    counts.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 (train needs ids), got "
            f"{val_fraction} + {test_fraction}"
        )
    n = len(ids)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise ValueError(
            f"{source}: {n} id(s) cannot be split into train, val and test (val_fraction "
            f"{val_fraction}, test_fraction {test_fraction}): at least {needed} needed"
        )

    def position(sample_id: str) -> float:
        digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranges = {  # part → [low, high) of positions
        "val": (0.0, val_fraction),
        "test": (val_fraction, val_fraction + test_fraction),
        "train": (val_fraction + test_fraction, 1.0),
    }
    positions = {i: position(i) for i in ids}
    part = {i: next(p for p, (_, high) in ranges.items() if u < high or p == "train")
            for i, u in positions.items()}  # fmt: skip
    for name, (low, high) in ranges.items():
        if high > low and name not in part.values():  # a tiny list left it empty
            members = {p: [i for i in ids if part[i] == p] for p in ranges}
            donor = max(members.values(), key=len)
            part[min(donor, key=lambda i: abs(positions[i] - (low + high) / 2))] = name
    return {name: [i for i in ids if part[i] == name] for name in SPLITS}


def write_split_lists(
    root: str | Path,
    out_dir: str | Path,
    splits: tuple[str, ...] = SPLITS,
    *,
    seed: int = DEFAULT_SPLIT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> dict[str, Path]:
    """Write the resolved id list of each split to ``out_dir/<split>.txt`` (for traceability)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        path = out_dir / f"{split}.txt"
        ids = resolve_split(
            root, split, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )
        path.write_text("\n".join(ids) + "\n")
        written[split] = path
    return written
