"""vs_official's mask check: identical masks, or differences confined to the pixels an
official side marks as within float rounding of its threshold (counted apart)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from official_common import Side  # noqa: E402
from perf_report import parse  # noqa: E402
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


def test_a_cpu_only_comparison_is_skipped_with_its_reason_on_a_gpu(monkeypatch, tmp_path,
                                                                   capsys):
    """FSSAM's official side runs on the CPU only: asked for a GPU run, the row is skipped
    with the reason and a skip headline, and nothing is prepared or run."""
    import vs_official

    monkeypatch.setenv("FSSAM_OFFICIAL_DIR", str(tmp_path))  # never read: skipped first
    monkeypatch.setattr(vs_official, "compare", lambda *a: (_ for _ in ()).throw(
        AssertionError("a skipped comparison must not run")))
    vs_official.main(["--methods", "fss_sam2", "--kinds", "recurring", "--device", "cuda",
                      "--size", "tiny"])
    out = capsys.readouterr().out
    assert "fss_sam2: skipped (the official FSSAM side is wired for the CPU only" in out
    assert "run it with --device cpu" in out
    rows = parse(out)
    assert [(r["status"], r["target"]) for r in rows] == [("skipped", 3.0)]
    assert "--device cpu" in rows[0]["reason"]
