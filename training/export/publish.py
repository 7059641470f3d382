"""Publishing an export as a TF Serving version: ``models/<name>/<N>/``, atomically.

The version is staged in a hidden folder beside the versions (``.export-N-…``: TF Serving only
loads integer names), built and verified there (:func:`training.export.saved_model.stage_version`),
and only then renamed to ``N`` — one atomic step, so a polling server never sees half a
version, and a version that fails verification never lands. Numbers are never reused.

    report = export_run("runs/voc", "models")                      # the next version
    report = export_run("runs/voc", "models", precision="float16", version=7)
    print(report.text())
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from client import contract
from training.config import ExportOptions
from training.export.saved_model import ExportError, folder_size, stage_version
from training.export.verify import VerificationReport
from training.export.warmup import DEFAULT_WARMUP_SIZES
from training.learning.run_folder import RunFolder

_RESERVED = re.compile(r"\.export-([0-9]+)-.*|([0-9]+)(?![0-9]).*")


def existing_versions(model_dir: str | Path) -> list[int]:
    """Integer version folders under ``models/<name>/``, ascending (as TF Serving sees them)."""
    return list(contract.version_folders(model_dir))


def _number_in(name: str) -> int | None:
    """The version number a folder name holds or reserves: ``3``, a staging ``.export-3-…``,
    or a rolled-back ``3.rolled-back`` / ``3-bad`` (numbers are never reused)."""
    match = _RESERVED.fullmatch(name)
    return int(match.group(1) or match.group(2)) if match else None


def next_version(model_dir: str | Path) -> int:
    """One above every number in use, including staging and rolled-back folders, so a
    number never names two different models (in logs, metrics, caches)."""
    model_dir = Path(model_dir)
    names = [p.name for p in model_dir.iterdir()] if model_dir.is_dir() else []
    used = [n for n in map(_number_in, names) if n is not None]
    return max(used, default=0) + 1


def remove_versions_of_run(model_dir: str | Path, run_dir: str | Path) -> list[int]:
    """Removes the versions under ``model_dir`` that ``run_dir`` exported before (a run
    exported again replaces its earlier exports; other versions stay); returns their numbers."""
    removed = contract.versions_exported_from(model_dir, run_dir)
    for folder in removed.values():
        shutil.rmtree(folder)
    return list(removed)


@dataclass
class ExportReport:
    path: Path
    version: int
    precision: str
    resize: str
    size_bytes: int
    seconds: float
    verification: VerificationReport

    def text(self) -> str:
        head = (
            f"exported {self.path} (version {self.version}, {self.precision}, resize "
            f"{self.resize}, {self.size_bytes / 1e6:.1f} MB on disk) in {self.seconds:.1f} s"
        )
        return f"{head}\n{self.verification.text()}"


def export_run(
    run_dir: str | Path,
    models_dir: str | Path,
    options: ExportOptions | None = None,
    *,
    warmup_sizes: tuple[tuple[int, int], ...] = DEFAULT_WARMUP_SIZES,
    **changes,
) -> ExportReport:
    """Exports, verifies and atomically publishes ``<models_dir>/<name>/<version>/``.

    ``options`` (default :class:`~training.config.ExportOptions`), with ``changes`` to any of
    its fields applied (``export_run(run, models, precision="float16")``)."""
    started = time.perf_counter()
    options = dataclasses.replace(options or ExportOptions(), **changes)
    run = RunFolder(run_dir)
    config = run.read_config()  # a missing or broken run fails before anything is written
    model_dir = Path(models_dir) / options.name
    version = next_version(model_dir) if options.version is None else options.version
    target = model_dir / str(version)
    if target.exists():
        raise ExportError(
            f"{target} exists: versions are never overwritten (pick another --version, or "
            f"remove that folder to replace it)"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".export-{version}-{uuid.uuid4().hex[:8]}"
    try:
        verification = stage_version(
            run, config, staging, options, version=version, warmup_sizes=warmup_sizes
        )
        try:
            os.rename(staging, target)  # atomic; fails if another export took the number
        except OSError as error:
            raise ExportError(f"could not publish {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(
        path=target,
        version=version,
        precision=options.precision,
        resize=options.resize,
        size_bytes=folder_size(target),
        seconds=time.perf_counter() - started,
        verification=verification,
    )
