"""PASCAL VOC 2012 conventions: layout, class ids, palettized masks and the book's splits.

A VOC-format root holds ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palettized:
the pixel values *are* the class ids, the palette only colours them) and
``ImageSets/Segmentation/<list>.txt``.

    mask = read_mask("VOC2012/SegmentationClass/2007_000032.png")  # uint8 ids, 255 = border
    ids = resolve_split("VOC2012", "test")  # second half of val.txt, seed 4321
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from client.palette import IGNORE_LABEL, VOC_CLASS_NAMES, voc_colormap

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "IGNORE_LABEL",
    "NUM_CLASSES",
    "VOC_CLASS_NAMES",
    "RepeatedIdsError",
    "class_names",
    "image_path",
    "mask_path",
    "read_mask",
    "read_split_list",
    "resolve_split",
    "rgb_to_mask",
    "split_list_names",
    "split_list_path",
    "voc_colormap",
    "write_mask",
    "write_split_lists",
]

NUM_CLASSES = len(VOC_CLASS_NAMES)
class_names: tuple[str, ...] = VOC_CLASS_NAMES
DEFAULT_SPLIT_SEED = 4321
"""Seed of the shuffle that halves val.txt into val and test (the book's value)."""

IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
SPLIT_DIR = Path("ImageSets") / "Segmentation"


def image_path(root: str | Path, sample_id: str) -> Path:
    return Path(root) / IMAGE_DIR / f"{sample_id}.jpg"


def mask_path(root: str | Path, sample_id: str) -> Path:
    return Path(root) / MASK_DIR / f"{sample_id}.png"


def split_list_path(root: str | Path, list_name: str) -> Path:
    return Path(root) / SPLIT_DIR / f"{list_name}.txt"


def read_mask(path: str | Path) -> np.ndarray:
    """Read a VOC mask as an H×W uint8 array of class ids (the palette indices, never RGB).

    Palettized (mode P) masks are VOC's format; single-channel (mode L) index masks are
    accepted too. An RGB mask is refused: convert it with :func:`rgb_to_mask`.
    """
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(
                f"{path}: mask must be palettized (mode P) or single-channel (mode L), "
                f"got mode {image.mode}; convert colour masks with training.data.voc.rgb_to_mask"
            )
        return np.asarray(image, dtype=np.uint8).copy()


def write_mask(mask: np.ndarray, path: str | Path) -> None:
    """Write class ids as a palettized PNG with the VOC palette, as VOC's own masks are."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{path}: mask must be a 2-D uint8 array, got {mask.dtype} {mask.shape}")
    image = Image.fromarray(mask, mode="P")
    image.putpalette(voc_colormap().tobytes())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def rgb_to_mask(rgb: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Turn an H×W×3 colour-coded mask into H×W class ids by exact palette lookup (vectorized).

    Raises ValueError naming the first unknown colour, where it is and how many pixels have
    colours outside the palette.
    """
    palette = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an H×W×3 colour mask, got shape {rgb.shape}")
    codes = _pack_rgb(palette)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    if np.any(sorted_codes[1:] == sorted_codes[:-1]):
        raise ValueError("palette has repeated colours; colour → id is ambiguous")
    pixels = _pack_rgb(rgb)
    pos = np.clip(np.searchsorted(sorted_codes, pixels), 0, len(codes) - 1)
    known = sorted_codes[pos] == pixels
    if not known.all():
        y, x = map(int, np.argwhere(~known)[0])
        raise ValueError(
            f"colour {tuple(int(c) for c in rgb[y, x])} at (row {y}, col {x}) is not in the "
            f"palette ({int((~known).sum())} pixels with unknown colours)"
        )
    return order[pos].astype(np.uint8)


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


def resolve_split(root: str | Path, split: str, *, seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
    """Ids of a split, as the book defines them.

    ``train`` is train.txt; ``val`` and ``test`` are the first and second halves of val.txt
    shuffled with ``seed`` (its own generator, so global random state cannot move them); any
    other name is read from ``<name>.txt`` as is. With the official lists: 1464 / 724 / 725.
    """
    if split not in ("val", "test"):
        return read_split_list(split_list_path(root, split))
    val_ids = read_split_list(split_list_path(root, "val"))
    shuffled = [val_ids[i] for i in np.random.default_rng(seed).permutation(len(val_ids))]
    half = len(shuffled) // 2
    return shuffled[:half] if split == "val" else shuffled[half:]


def write_split_lists(
    root: str | Path,
    out_dir: str | Path,
    splits: tuple[str, ...] = ("train", "val", "test"),
    *,
    seed: int = DEFAULT_SPLIT_SEED,
) -> dict[str, Path]:
    """Write the resolved id list of each split to ``out_dir/<split>.txt`` (for traceability)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        path = out_dir / f"{split}.txt"
        path.write_text("\n".join(resolve_split(root, split, seed=seed)) + "\n")
        written[split] = path
    return written
