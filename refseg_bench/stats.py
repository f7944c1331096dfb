"""Fold mIoU from per-episode totals, and its class-stratified bootstrap interval.

Same rules as the scorer (docs/protocols.md §7.2): class IoU = sum of intersections / max(sum of
unions, 1); the fold mIoU averages over all the fold's classes, a class with no episode
counting as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Bootstrap draws are made in blocks of at most this many (replicate, episode) indices,
# to bound memory for large classes (e.g. 20,000 COCO episodes).
_MAX_BLOCK = 1 << 22


def _check(class_ids: np.ndarray, inter: np.ndarray, union: np.ndarray,
           fold_classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    class_ids, inter, union = (np.asarray(a).reshape(-1) for a in (class_ids, inter, union))
    if not (len(class_ids) == len(inter) == len(union)):
        raise ValueError(f"class ids, inter and union must have one entry per episode, got "
                         f"lengths {len(class_ids)}, {len(inter)}, {len(union)}")
    if len(fold_classes) == 0 or len(set(fold_classes)) != len(fold_classes):
        raise ValueError(f"fold_classes must be non-empty and distinct, got {list(fold_classes)}")
    unknown = sorted(set(class_ids.tolist()) - set(fold_classes))
    if unknown:
        raise ValueError(f"episodes of classes {unknown} are not in fold_classes "
                         f"{list(fold_classes)}; pass the fold's full class list.")
    return class_ids, inter.astype(np.int64), union.astype(np.int64)


def fold_miou(class_ids_per_episode: np.ndarray, inter: np.ndarray, union: np.ndarray,
              fold_classes: Sequence[int]) -> float:
    """Fold mIoU in percent from per-episode foreground ``inter`` / ``union`` (int)."""
    cls, inter, union = _check(class_ids_per_episode, inter, union, fold_classes)
    total = 0.0
    for c in fold_classes:
        sel = cls == c
        total += inter[sel].sum() / max(int(union[sel].sum()), 1)
    return 100.0 * total / len(fold_classes)


def bootstrap_miou(class_ids_per_episode: np.ndarray, inter: np.ndarray, union: np.ndarray,
                   fold_classes: Sequence[int], *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile interval (percent) of the fold mIoU under a class-stratified bootstrap.

    Each replicate resamples, with replacement, each class's own episodes (so every class
    keeps its episode count) and recomputes the fold mIoU by the rules above. Pure: the
    draws come from ``numpy.random.default_rng(seed)``.

    Args:
        class_ids_per_episode: ``(E,)`` int, the class of each episode.
        inter, union: ``(E,)`` int, foreground intersection and union of each episode.
        fold_classes: all the fold's classes (the mean runs over them).
    Returns:
        ``(low, high)`` percentiles at ``(1 - level) / 2`` and ``(1 + level) / 2``.
    """
    cls, inter, union = _check(class_ids_per_episode, inter, union, fold_classes)
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, "
                         f"level={level}")
    rng = np.random.default_rng(seed)
    iou_sum = np.zeros(n_boot)
    for c in fold_classes:  # unsampled classes add 0
        sel = np.flatnonzero(cls == c)
        if len(sel):
            iou_sum += _class_replicates(inter[sel], union[sel], n_boot, rng)
    miou = 100.0 * iou_sum / len(fold_classes)
    low, high = np.percentile(miou, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def paired_miou_replicates(class_ids_per_episode: np.ndarray, inter_a: np.ndarray,
                           union_a: np.ndarray, inter_b: np.ndarray, union_b: np.ndarray,
                           fold_classes: Sequence[int], *, n_boot: int = 1000,
                           rng: np.random.Generator) -> np.ndarray:
    """``(2, n_boot)`` fold mIoU (percent) of runs A and B under one class-stratified
    bootstrap of their *shared* episodes: each replicate resamples each class's episodes
    once and scores both runs on that same resample, so B - A is a paired difference.

    Args:
        class_ids_per_episode: ``(E,)`` int, the class of each episode (same in both runs).
        inter_a, union_a, inter_b, union_b: ``(E,)`` int foreground totals of each episode in
            run A and run B, episode ``e`` being the same episode in both.
        fold_classes: all the fold's classes (unsampled ones add 0 to both).
        rng: the generator the draws come from.
    """
    cls, inter_a, union_a = _check(class_ids_per_episode, inter_a, union_a, fold_classes)
    _, inter_b, union_b = _check(class_ids_per_episode, inter_b, union_b, fold_classes)
    if n_boot < 1:
        raise ValueError(f"need n_boot >= 1, got {n_boot}")
    iou_sum = np.zeros((2, n_boot))
    for c in fold_classes:
        sel = np.flatnonzero(cls == c)
        if len(sel):
            iou_sum += _class_replicates(np.stack([inter_a[sel], inter_b[sel]]),
                                         np.stack([union_a[sel], union_b[sel]]), n_boot, rng)
    return 100.0 * iou_sum / len(fold_classes)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates at ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"need 0 < level < 1, got {level}")
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _class_replicates(inter: np.ndarray, union: np.ndarray, n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """IoU of one class over episodes resampled with replacement: ``(n_boot,)`` for
    ``(n,)`` totals, ``(k, n_boot)`` for ``(k, n)`` totals of k runs scored on the same
    resamples."""
    n = inter.shape[-1]
    block = max(1, _MAX_BLOCK // n)
    out = np.empty(inter.shape[:-1] + (n_boot,))
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - start), n))
        out[..., start:start + len(idx)] = (inter[..., idx].sum(-1)
                                            / np.maximum(union[..., idx].sum(-1), 1))
    return out
