"""What is wrong with a dataset: each problem names its file; an error lists all of them.

Every reader (checks, index masks, SBD's conversion, the Cityscapes reader) reports through
these, so a bad file is always named and never silently dropped.

    raise DatasetError([Problem(path, "mask values: expected 0–20 and 255, got [40]")])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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
