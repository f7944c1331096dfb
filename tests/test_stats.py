import numpy as np
import pytest
import torch

from refseg_bench.scorer import Scorer
from refseg_bench.stats import bootstrap_miou, fold_miou


def _episodes(per_class: int, classes=(1, 2, 3, 4, 5), seed=0):
    """Per-episode (class, inter, union) with class-dependent quality."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.array(classes), per_class)
    union = rng.integers(500, 5000, size=len(cls))
    quality = 0.3 + 0.1 * (cls % 5) + rng.normal(0, 0.15, size=len(cls))
    inter = (np.clip(quality, 0, 1) * union).astype(np.int64)
    return cls, inter, union


def test_fold_miou_equals_scorer():
    cls, inter, union = _episodes(40)
    s = Scorer([1, 2, 3, 4, 5, 6])  # class 6 unsampled
    fb = np.zeros((len(cls), 2), np.int64)
    s.add(cls.tolist(), torch.from_numpy(np.column_stack([inter, union, fb])))
    assert fold_miou(cls, inter, union, [1, 2, 3, 4, 5, 6]) == pytest.approx(s.compute().miou)


def test_interval_contains_estimate_and_shrinks_with_more_episodes():
    widths = []
    for per_class in (20, 500):
        cls, inter, union = _episodes(per_class, seed=per_class)
        point = fold_miou(cls, inter, union, [1, 2, 3, 4, 5])
        lo, hi = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], n_boot=500)
        assert lo < point < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(25) = 1/5 expected


def test_deterministic_per_seed_and_level_orders_intervals():
    cls, inter, union = _episodes(30)
    a = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], seed=3)
    assert a == bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], seed=3)
    assert a != bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], seed=4)
    lo50, hi50 = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], seed=3, level=0.5)
    assert a[0] < lo50 < hi50 < a[1]


def test_unsampled_class_counts_as_zero_in_every_replicate():
    cls, inter, union = _episodes(30)
    five = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], seed=1)
    six = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5, 6], seed=1)
    np.testing.assert_allclose(six, np.array(five) * 5 / 6)


def test_blocked_draws_match_the_estimate(monkeypatch):
    # A class larger than one block of draws is resampled in several blocks.
    from refseg_bench import stats

    monkeypatch.setattr(stats, "_MAX_BLOCK", 1000)
    cls, inter, union = _episodes(300)
    lo, hi = bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], n_boot=200)
    assert lo < fold_miou(cls, inter, union, [1, 2, 3, 4, 5]) < hi


def test_errors():
    cls, inter, union = _episodes(5)
    with pytest.raises(ValueError, match=r"classes \[5\] are not in fold_classes"):
        bootstrap_miou(cls, inter, union, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="one entry per episode"):
        bootstrap_miou(cls, inter[:-1], union, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="0 < level < 1"):
        bootstrap_miou(cls, inter, union, [1, 2, 3, 4, 5], level=95)
