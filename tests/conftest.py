"""Shared fixtures: the real VOC sample from ../shared and small synthetic VOC roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
VOC_SAMPLE = Path(os.environ.get("VOC_SAMPLE_DIR", REPO.parent / "shared" / "data" / "voc_sample"))


@pytest.fixture(scope="session")
def voc_sample() -> Path:
    """The nine real VOC 2012 pairs with split lists (read-only)."""
    if not (VOC_SAMPLE / "SegmentationClass").is_dir():
        pytest.skip(
            f"real VOC sample not found at {VOC_SAMPLE} (set VOC_SAMPLE_DIR to a folder with "
            "the shared voc_sample to run this test)"
        )
    return VOC_SAMPLE


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic VOC root shared by read-only tests (12 train, 4 val, 160x120)."""
    from training.synth import write_synthetic_voc

    return write_synthetic_voc(
        tmp_path_factory.mktemp("synth") / "voc",
        count=16,
        seed=3,
        size=(160, 120),
        val_fraction=0.25,
    )


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Index masks of read-only roots go to a per-session cache, not the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
