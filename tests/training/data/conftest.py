"""Fixtures of the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def indoor_root(tmp_path_factory) -> Path:
    """A synthetic indoor world in CVAT's layout (12 frames, 96x72), read-only."""
    from training.data.synth import write_synthetic_cvat

    return write_synthetic_cvat(
        tmp_path_factory.mktemp("indoor") / "cvat", count=12, seed=2, size=(96, 72)
    )
