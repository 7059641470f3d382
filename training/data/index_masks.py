"""Index masks: a dataset's masks (palettized, index or colour) converted once into
single-channel PNGs of class ids.

TensorFlow's PNG decoder expands palettes to RGB and knows no labelmap, so the tf.data
pipeline (:mod:`training.data.pipeline`) reads these instead, whatever form the masks came
in (:mod:`training.data.masks`). Each mask is checked as it is converted, and a manifest
remembers what was converted from which source file for which labelmap and class count, so
a second run converts nothing, and a replaced mask or an edited labelmap.txt converts again.

    index_dir = prepare_index_masks("VOCdevkit/VOC2012", ids)  # <root>/SegmentationClassIndex
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from training.data.check import DatasetError, Problem, inspect_sample
from training.data.labelmap import Labelmap
from training.data.layouts import DatasetLayout, as_layout

log = logging.getLogger(__name__)

INDEX_MASK_DIR = "SegmentationClassIndex"
MANIFEST_NAME = "manifest.json"


def default_index_dir(voc_root: str | Path) -> Path:
    """``<root>/SegmentationClassIndex`` when the root is writable, else a per-root user cache."""
    root = Path(voc_root).resolve()
    if os.access(root, os.W_OK):
        return root / INDEX_MASK_DIR
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return cache_home / "rc-segmentation" / f"{root.name}-{digest}" / INDEX_MASK_DIR


def index_mask_path(index_dir: str | Path, sample_id: str) -> Path:
    return Path(index_dir) / f"{sample_id}.png"


def prepare_index_masks(
    voc_root: str | Path | DatasetLayout,
    ids: Sequence[str],
    index_dir: str | Path | None = None,
    *,
    num_classes: int | None = None,
    progress: bool = True,
) -> Path:
    """Write each listed mask as a single-channel PNG of class ids, once.

    Masks are found and read through the root's layout (:mod:`training.data.layouts`) and
    its classes (labelmap.txt, Cityscapes' table, or VOC's), and checked for ``num_classes``
    (default: the labelmap's; a root with labelmap.txt allows no other).
    A manifest in ``index_dir`` records each source's (mtime, size), the labelmap and the
    ``num_classes`` its values were checked against; masks that are new or changed in any
    way are (re)converted, and all of them when the labelmap or the class count changed.
    Each is checked as it is read (image readable, mask form, colours, values, sizes), and
    any problem raises DatasetError listing all of them: no sample is dropped silently.
    """
    layout = as_layout(voc_root)
    labelmap, num_classes = layout.classes(num_classes)
    key = {
        "num_classes": num_classes,
        "labelmap": labelmap_digest(labelmap),
        **layout.index_key(),
    }
    index_dir = Path(index_dir) if index_dir is not None else default_index_dir(layout.root)
    manifest = _read_manifest(index_dir, key)
    stamps = {sample_id: _source_stamp(layout, sample_id) for sample_id in ids}
    stale = [
        sample_id
        for sample_id, stamp in stamps.items()
        if stamp is None
        or manifest.get(sample_id) != stamp
        or not index_mask_path(index_dir, sample_id).exists()
    ]
    if not stale:
        return index_dir
    log.info("converting %d masks into %s", len(stale), index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)

    def convert(sample_id: str) -> list[Problem]:
        report = inspect_sample(layout, sample_id, num_classes, keep_mask=True, labelmap=labelmap)
        if not report.problems:
            target = index_mask_path(index_dir, sample_id)
            # A name of this process's own: the workers of a multi-worker run convert the same
            # root at once, and a shared temporary name lets one rename the other's away.
            partial = target.with_name(f".{target.stem}.{os.getpid()}.tmp.png")
            if not cv2.imwrite(str(partial), report.mask):
                return [Problem(partial, "could not write the index mask")]
            partial.replace(target)  # atomic: a reader never sees half a file
        return report.problems

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(convert, stale)
        found = dict(
            zip(
                stale,
                tqdm(results, total=len(stale), desc="preparing masks", disable=not progress),
                strict=True,
            )
        )
    problems = [problem for sample_problems in found.values() for problem in sample_problems]
    manifest.update({i: stamps[i] for i, sample_problems in found.items() if not sample_problems})
    _write_manifest(index_dir, key, manifest)
    if problems:
        raise DatasetError(problems, f"dataset root {layout.root}")
    return index_dir


def labelmap_digest(labelmap: Labelmap) -> str:
    """What the index masks depend on in a labelmap: its names and colours in id order (not
    the file's comments or spacing)."""
    return hashlib.sha1(labelmap.to_text().encode()).hexdigest()


def _source_stamp(layout: DatasetLayout, sample_id: str) -> list[int] | None:
    """(mtime_ns, size) of a source mask (the file the layout reads: VOC's, or SBD's where VOC
    has none): any replacement, even by an older file, changes it."""
    path = layout.mask_path(sample_id)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return [stat.st_mtime_ns, stat.st_size]


def _read_manifest(index_dir: Path, key: dict[str, object]) -> dict[str, list[int]]:
    """Source stamps of the index masks in ``index_dir`` that were made for ``key`` (class
    count and labelmap); none when they were made for another."""
    try:
        manifest = json.loads((index_dir / MANIFEST_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if any(manifest.get(name) != value for name, value in key.items()):
        return {}
    return manifest.get("sources", {})


def _write_manifest(index_dir: Path, key: dict[str, object], sources: dict[str, list[int]]) -> None:
    partial = index_dir / f"{MANIFEST_NAME}.{os.getpid()}.tmp"  # per process, as above
    partial.write_text(json.dumps({**key, "sources": sources}))
    partial.replace(index_dir / MANIFEST_NAME)
