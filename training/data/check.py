"""Verification of a dataset root (VOC's layout, CVAT's export as it is, or Cityscapes'): every
listed sample present, readable and consistent with the root's classes. The root's files are
found through its layout (:mod:`training.data.layouts`).

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
from training.data.labelmap import LABELMAP_FILE, Labelmap, LabelmapError, class_names
from training.data.layouts import DatasetLayout, as_layout
from training.data.masks import MaskError
from training.data.problems import DatasetError, Problem


@dataclass
class SampleReport:
    sample_id: str
    problems: list[Problem] = field(default_factory=list)
    class_pixels: np.ndarray | None = None  # 256 bins: pixel count of each class id
    mask: np.ndarray | None = None  # the class ids, when asked for with keep_mask


IMAGE_MODES = ("RGB", "L", "RGBA", "P")
"""Image modes the pipeline decodes to RGB (``tf.io.decode_image(channels=3)``)."""


def inspect_sample(
    root: str | Path | DatasetLayout,
    sample_id: str,
    num_classes: int | None = None,
    keep_mask: bool = False,
    *,
    labelmap: Labelmap | None = None,
    check_classes: bool = True,
) -> SampleReport:
    """Check one image/mask pair; the image is fully decoded so truncated files are caught.

    The mask is read as class ids through ``labelmap`` (default: the root's) by the root's
    layout (:func:`training.data.masks.read_class_ids` in any form it accepts, or
    Cityscapes' label ids → train ids), and checked for
    ``num_classes`` (default: the labelmap's). ``check_classes=False`` checks files and sizes
    only (for a root whose labelmap is broken). ``keep_mask`` returns the class ids in the
    report, for callers that convert them.
    """
    layout = as_layout(root)
    if labelmap is None and check_classes:
        labelmap, num_classes = layout.classes(num_classes)
    report = SampleReport(sample_id)
    image_file, mask_file = layout.image_path(sample_id), layout.mask_path(sample_id)
    image_size = mask_size = None
    try:
        with Image.open(image_file) as image:
            image.load()
            image_size = image.size
            if image.mode not in IMAGE_MODES:
                report.problems.append(
                    Problem(image_file, f"image mode: expected RGB, got {image.mode}")
                )
    except FileNotFoundError:
        report.problems.append(Problem(image_file, layout.missing_image_message(sample_id)))
    except OSError as error:
        report.problems.append(Problem(image_file, f"image unreadable: {error}"))
    try:
        with Image.open(mask_file) as mask_image:
            mask_size = mask_image.size
        if check_classes:
            ids = layout.read_class_ids(mask_file, labelmap, num_classes)
            report.class_pixels = np.bincount(ids.ravel(), minlength=256)
            if keep_mask:
                report.mask = ids
    except FileNotFoundError:
        report.problems.append(Problem(mask_file, f"mask missing (id {sample_id!r})"))
    except MaskError as error:
        report.problems.append(Problem(error.path, error.what))
    except ValueError as error:  # colours not in the labelmap: the message names the file
        report.problems.append(Problem(mask_file, str(error).removeprefix(f"{mask_file}: ")))
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
    root: str | Path | DatasetLayout,
    ids: Iterable[str],
    num_classes: int | None = None,
    progress: str | None = None,
    *,
    labelmap: Labelmap | None = None,
    check_classes: bool = True,
) -> list[SampleReport]:
    """Inspect many samples on a thread pool (PIL decodes without the GIL)."""
    layout = as_layout(root)
    if labelmap is None and check_classes:
        labelmap, num_classes = layout.classes(num_classes)
    ids = list(ids)
    workers = min(8, os.cpu_count() or 1)

    def inspect(sample_id: str) -> SampleReport:
        return inspect_sample(
            layout, sample_id, num_classes, labelmap=labelmap, check_classes=check_classes
        )

    with ThreadPoolExecutor(workers) as pool:
        reports = pool.map(inspect, ids)
        return list(tqdm(reports, total=len(ids), desc=progress, disable=progress is None))


@dataclass
class CheckReport:
    root: Path
    split_counts: dict[str, int]
    class_pixels: np.ndarray  # 256 bins over every distinct listed sample
    problems: list[Problem]
    num_classes: int = voc.NUM_CLASSES
    class_names: Sequence[str] = voc.class_names  # the dataset's: its labelmap's, or VOC's

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"dataset root {self.root}"]
        lines += [f"  split {name:<12} {count:6d} ids" for name, count in self.split_counts.items()]
        total = int(self.class_pixels.sum())
        lines.append(f"  pixel frequency over {total} pixels:")
        names = class_names(self.class_names, self.num_classes)
        rows = [(i, names[i]) for i in range(self.num_classes)]
        rows.append((voc.IGNORE_LABEL, "ignore (255)"))
        width = max(14, *(len(name) for _, name in rows))
        for index, name in rows:
            count = int(self.class_pixels[index])
            share = 100.0 * count / total if total else 0.0
            lines.append(f"    {index:3d} {name:<{width}} {count:12d} {share:6.2f}%")
        if self.problems:
            lines.append(f"  {len(self.problems)} problem(s):")
            lines += [f"    - {p}" for p in self.problems]
        else:
            lines.append("  no problems found")
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise DatasetError(self.problems, f"dataset root {self.root}")


def _classes(
    layout: DatasetLayout, num_classes: int | None, problems: list[Problem]
) -> tuple[Labelmap, int, bool]:
    """(labelmap, class count, whether masks can be checked for classes); what is wrong with
    the labelmap goes to ``problems``, one entry per bad line."""
    path = layout.root / LABELMAP_FILE
    try:
        labelmap = layout.labelmap()
    except LabelmapError as error:  # files and sizes are still checked
        problems += [Problem(path, what) for what in error.problems or [str(error)]]
        return Labelmap.voc(), num_classes or 0, False
    try:
        return (*layout.classes(num_classes), True)
    except LabelmapError as error:  # another count asked for: check with the labelmap's
        problems += [Problem(Path(error.source), what) for what in error.problems]
        return labelmap, labelmap.num_classes, True


def check_root(
    root: str | Path,
    *,
    num_classes: int | None = None,
    lists: Sequence[str] | None = None,
    progress: bool = False,
) -> CheckReport:
    """Verify every sample named by the split lists (all of ImageSets/Segmentation by default,
    and train_aug once SBD is prepared; Cityscapes: every split folder) against the root's
    classes (labelmap.txt, Cityscapes' table, or VOC's), listing every problem: a labelmap
    that does not parse (each bad line), ids listed twice, missing or undecodable files,
    masks whose colours or ids are not the labelmap's, sizes that differ. ``num_classes``
    defaults to the labelmap's. With a broken labelmap the files are still checked."""
    root = Path(root)
    layout = as_layout(root)
    problems: list[Problem] = []
    labelmap, num_classes, check_classes = _classes(layout, num_classes, problems)
    if lists is None:
        lists = layout.list_names()
        if not lists:
            problems.append(layout.missing_lists_problem())
    split_counts, all_ids = {}, {}
    for name in lists:
        path = layout.list_path(name)
        try:
            ids = layout.list_ids(name)
        except voc.RepeatedIdsError as error:  # reported, and its samples still checked
            problems.append(Problem(error.path, str(error).removeprefix(f"{error.path}: ")))
            ids = error.ids
        except (FileNotFoundError, ValueError) as error:
            problems.append(Problem(path, str(error)))
            continue
        split_counts[name] = len(ids)
        all_ids.update(dict.fromkeys(ids))
    reports = inspect_samples(
        layout,
        all_ids,
        num_classes,
        "checking" if progress else None,
        labelmap=labelmap,
        check_classes=check_classes,
    )
    class_pixels = np.zeros(256, np.int64)
    for report in reports:
        problems += report.problems
        if report.class_pixels is not None:
            class_pixels += report.class_pixels
    names = labelmap.names if check_classes else ()
    return CheckReport(root, split_counts, class_pixels, problems, num_classes, names)
