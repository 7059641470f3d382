"""The boundary (trimap) band and its confusion, against cases counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.learning.metrics import scores_from_confusion
from training.learning.trimap import edge_band, trimap_confusion

# 6×6: class 0 in columns 0–2, class 1 in columns 3–5; one vertical edge.
LABELS = np.repeat([[0, 0, 0, 1, 1, 1]], 6, axis=0).astype(np.uint8)
# The predicted edge one column to the right: column 3 is wrong.
PREDICTED = np.repeat([[0, 0, 0, 0, 1, 1]], 6, axis=0)


def test_the_band_is_the_edge_pixels_and_those_within_the_width():
    columns = lambda band: sorted(set(np.nonzero(band)[1].tolist()))  # noqa: E731
    assert columns(edge_band(LABELS, 0)) == [2, 3]  # both sides of the edge
    assert columns(edge_band(LABELS, 1)) == [1, 2, 3, 4]
    assert columns(edge_band(LABELS, 2)) == [0, 1, 2, 3, 4, 5]
    assert edge_band(LABELS, 1).sum() == 24
    dot = np.zeros((7, 7), np.uint8)
    dot[3, 3] = 3
    assert edge_band(dot, 0).sum() == 9  # the dot and its 8 neighbours touch another label
    # Euclidean distance: the 3×3 block grows by a row on each side, not by the corners (√2).
    assert edge_band(dot, 1).sum() == 9 + 4 * 3
    assert edge_band(np.full((4, 4), 7, np.uint8), 3).sum() == 0  # no edge, no band


def test_trimap_mean_iou_of_a_shifted_edge_counted_by_hand():
    # Whole image: class 0 TP 18 of union 24, class 1 TP 12 of union 18.
    whole = trimap_confusion(LABELS, PREDICTED, num_classes=2, width=100)
    assert float(scores_from_confusion(whole)["mean_iou"]) == pytest.approx((18 / 24 + 12 / 18) / 2)
    # Width 1 (columns 1–4): true 0 in columns 1–2 (12 px), true 1 in 3–4 (12 px); predicted 0
    # in 1–3 (18 px). IoU 0: 12 / 18; IoU 1: 6 / 12.
    band = trimap_confusion(LABELS, PREDICTED, num_classes=2, width=1)
    np.testing.assert_array_equal(band, [[12, 0], [6, 6]])
    assert float(scores_from_confusion(band)["mean_iou"]) == pytest.approx((12 / 18 + 6 / 12) / 2)
    # Batches sum; ignored pixels leave the count (they stay labels for the edges).
    batch = trimap_confusion(np.stack([LABELS] * 2), np.stack([PREDICTED] * 2), num_classes=2,
                             width=1)  # fmt: skip
    np.testing.assert_array_equal(batch, 2 * band)
    # Row 0 ignored: rows 1–2 now lie within 1 px of its edge (12 px), rows 3–5 count columns
    # 1–4 (12 px); row 0 itself does not count.
    ignored = LABELS.copy()
    ignored[0, :] = 255
    assert trimap_confusion(ignored, PREDICTED, num_classes=2, width=1).sum() == 24


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="differ"):
        trimap_confusion(LABELS, PREDICTED[:3], num_classes=2, width=1)
    with pytest.raises(ValueError, match="width"):
        edge_band(LABELS, -1)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        edge_band(LABELS[None], 1)
