"""Verification of a VOC-format root: every listed sample present, readable and consistent.

Used by ``python -m training data check`` and by the pipeline's prepare step, so a bad file
is always reported (file, what, expected vs got) and never silently dropped.

    report = check_root("VOCdevkit/VOC2012")
    print(report.format()); report.raise_if_problems()
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from training.data import voc


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


class DatasetError(ValueError):
    """A dataset has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[Problem], context: str = "dataset"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{context}: {len(self.problems)} problem(s):\n{lines}")


@dataclass
class SampleReport:
    sample_id: str
    problems: list[Problem] = field(default_factory=list)
    class_pixels: np.ndarray | None = None  # 256 bins: pixel count of each mask value
    mask: np.ndarray | None = None  # the class ids, when asked for with keep_mask


def inspect_sample(
    root: str | Path, sample_id: str, num_classes: int = voc.NUM_CLASSES, keep_mask: bool = False
) -> SampleReport:
    """Check one image/mask pair; the image is fully decoded so truncated files are caught.

    ``keep_mask`` returns the decoded class ids in the report, for callers that convert them.
    """
    report = SampleReport(sample_id)
    image_file, mask_file = voc.image_path(root, sample_id), voc.mask_path(root, sample_id)
    image_size = mask_size = None
    try:
        with Image.open(image_file) as image:
            image.load()
            image_size = image.size
            if image.mode not in ("RGB", "L"):
                report.problems.append(
                    Problem(image_file, f"image mode: expected RGB, got {image.mode}")
                )
    except FileNotFoundError:
        report.problems.append(Problem(image_file, "image missing"))
    except OSError as error:
        report.problems.append(Problem(image_file, f"image unreadable: {error}"))
    try:
        with Image.open(mask_file) as mask_image:
            mask_size = mask_image.size
            if mask_image.mode != "P":
                report.problems.append(
                    Problem(mask_file, f"mask mode: expected P (palettized), got {mask_image.mode}")
                )
            else:
                mask = np.asarray(mask_image)
                if keep_mask:
                    report.mask = mask
                report.class_pixels = np.bincount(mask.ravel(), minlength=256)
                allowed = np.zeros(256, bool)
                allowed[:num_classes] = allowed[voc.IGNORE_LABEL] = True
                bad = np.flatnonzero((report.class_pixels > 0) & ~allowed)
                if bad.size:
                    report.problems.append(
                        Problem(
                            mask_file,
                            f"mask values: expected 0–{num_classes - 1} and 255, "
                            f"got {bad.tolist()}",
                        )
                    )
    except FileNotFoundError:
        report.problems.append(Problem(mask_file, "mask missing"))
    except OSError as error:
        report.problems.append(Problem(mask_file, f"mask unreadable: {error}"))
    if image_size and mask_size and image_size != mask_size:
        report.problems.append(
            Problem(
                mask_file,
                f"size: expected the image's {image_size[0]}x{image_size[1]}, "
                f"got {mask_size[0]}x{mask_size[1]}",
            )
        )
    return report


def inspect_samples(
    root: str | Path,
    ids: Iterable[str],
    num_classes: int = voc.NUM_CLASSES,
    progress: str | None = None,
) -> list[SampleReport]:
    """Inspect many samples on a thread pool (PIL decodes without the GIL)."""
    ids = list(ids)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        reports = pool.map(lambda i: inspect_sample(root, i, num_classes), ids)
        return list(tqdm(reports, total=len(ids), desc=progress, disable=progress is None))


@dataclass
class CheckReport:
    root: Path
    split_counts: dict[str, int]
    class_pixels: np.ndarray  # 256 bins over every distinct listed sample
    problems: list[Problem]
    num_classes: int = voc.NUM_CLASSES

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"VOC root {self.root}"]
        lines += [f"  split {name:<12} {count:6d} ids" for name, count in self.split_counts.items()]
        total = int(self.class_pixels.sum())
        lines.append(f"  pixel frequency over {total} pixels:")
        names = list(voc.class_names[: self.num_classes])
        names += [f"class {i}" for i in range(len(names), self.num_classes)]
        rows = [(i, names[i]) for i in range(self.num_classes)]
        rows.append((voc.IGNORE_LABEL, "ignore (255)"))
        for index, name in rows:
            count = int(self.class_pixels[index])
            share = 100.0 * count / total if total else 0.0
            lines.append(f"    {index:3d} {name:<14} {count:12d} {share:6.2f}%")
        if self.problems:
            lines.append(f"  {len(self.problems)} problem(s):")
            lines += [f"    - {p}" for p in self.problems]
        else:
            lines.append("  no problems found")
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise DatasetError(self.problems, f"VOC root {self.root}")


def check_root(
    root: str | Path,
    *,
    num_classes: int = voc.NUM_CLASSES,
    lists: Sequence[str] | None = None,
    progress: bool = False,
) -> CheckReport:
    """Verify every sample named by the split lists (all of ImageSets/Segmentation by default)."""
    root = Path(root)
    problems: list[Problem] = []
    if lists is None:
        lists = voc.split_list_names(root) if (root / voc.SPLIT_DIR).is_dir() else []
        if not lists:
            problems.append(Problem(root / voc.SPLIT_DIR, "no split lists (*.txt) found"))
    split_counts, all_ids = {}, {}
    for name in lists:
        path = voc.split_list_path(root, name)
        try:
            ids = voc.read_split_list(path)
        except voc.RepeatedIdsError as error:  # reported, and its samples still checked
            problems.append(Problem(path, str(error).removeprefix(f"{path}: ")))
            ids = error.ids
        except (FileNotFoundError, ValueError) as error:
            problems.append(Problem(path, str(error)))
            continue
        split_counts[name] = len(ids)
        all_ids.update(dict.fromkeys(ids))
    reports = inspect_samples(root, all_ids, num_classes, "checking" if progress else None)
    class_pixels = np.zeros(256, np.int64)
    for report in reports:
        problems += report.problems
        if report.class_pixels is not None:
            class_pixels += report.class_pixels
    return CheckReport(root, split_counts, class_pixels, problems, num_classes)
