"""A slow, obviously correct NumPy scorer: the yardstick for ``refseg_bench.scorer``.

One episode at a time, written straight from the definitions of docs/protocols.md §7.2-§7.3; the
tests check the fast scorer against it and ``benchmarks/perf_core.py`` times both.
Resizing (``size=N``) is the one step it does not do by hand: it calls
``F.interpolate`` once per episode, as HSNet's loader does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def reference_episode_totals(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], *,
                             size: int | None = None, ignore: bool = True,
                             threshold: float = 0.5) -> np.ndarray:
    """``(B, 4)`` int64 ``[fg_inter, fg_union, bg_inter, bg_union]`` per episode; same
    arguments and conventions as ``refseg_bench.scorer.episode_totals``."""
    rows = []
    for pred, label in zip(preds, labels, strict=True):
        pred, label = torch.as_tensor(pred).cpu(), torch.as_tensor(label).cpu()
        if size is not None:
            pred = pred if pred.is_floating_point() else pred.float()
            pred = F.interpolate(pred[None, None], size=(size, size), mode="bilinear",
                                 align_corners=False)[0, 0]
            label = F.interpolate(label[None, None], size=(size, size), mode="nearest")[0, 0]
        if pred.dtype in (torch.float16, torch.bfloat16):
            # In the prediction's dtype, the threshold cast to it as torch casts a Python
            # number (NumPy rounds a float16 threshold once, torch via float32: rare
            # thresholds differ; NumPy has no bfloat16).
            p = (pred > threshold).numpy()
        else:
            p = pred.numpy() > threshold
        lab = label.numpy()
        g = lab == 1
        valid = lab != 255 if ignore else np.ones(lab.shape, bool)
        rows.append([
            np.logical_and(p, g)[valid].sum(),
            np.logical_or(p, g)[valid].sum(),
            np.logical_and(~p, ~g)[valid].sum(),
            np.logical_or(~p, ~g)[valid].sum(),
        ])
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def reference_scores(class_ids: Sequence[int], totals: np.ndarray,
                     fold_classes: Sequence[int]) -> tuple[float, float]:
    """``(miou, fbiou)`` in percent from per-episode totals, by explicit loops."""
    ious = []
    for c in fold_classes:
        inter = sum(int(t[0]) for k, t in zip(class_ids, totals, strict=True) if k == c)
        union = sum(int(t[1]) for k, t in zip(class_ids, totals, strict=True) if k == c)
        ious.append(inter / max(union, 1))  # 0 for a class with no episode
    fb = np.asarray(totals, np.int64).reshape(-1, 4).sum(0)
    fbiou = (fb[0] / max(fb[1], 1) + fb[2] / max(fb[3], 1)) / 2
    return 100.0 * float(np.mean(ious)), 100.0 * float(fbiou)
