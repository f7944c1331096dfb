"""vs_official's mask check: identical masks, or differences confined to the pixels an
official side marks as within float rounding of its threshold (counted apart)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from official_common import Side  # noqa: E402
from vs_official import compare_masks  # noqa: E402


def _side(masks, near=None):
    return Side(1.0, 50.0, masks, near=near or {}, near_rule="official |logit| < 0.0001")


def test_differences_only_at_near_threshold_pixels_are_counted_apart():
    base = np.zeros((4, 4), bool)
    near = np.zeros((4, 4), bool)
    near[0, 0] = True
    flipped, far = base.copy(), base.copy()
    flipped[0, 0] = True  # a near-threshold pixel
    far[0, 0] = far[3, 3] = True  # and one that is not
    official = _side({"0": base, "1": base, "2": base}, {"0": near, "1": near, "2": near})
    ours = _side({"0": base, "1": flipped, "2": far})
    same, total, differing, near_only = compare_masks(official, ours)
    assert (same, total, differing, near_only) == (1, 3, ["2"], {"1": 1})


def test_without_near_maps_every_difference_counts():
    base, flipped = np.zeros((4, 4), bool), np.eye(4, dtype=bool)
    same, total, differing, near_only = compare_masks(_side({"0": base}), _side({"0": flipped}))
    assert (same, total, differing, near_only) == (0, 1, ["0"], {})
