"""Instance-level matching and merging (official ``Matcher.mask_generation`` and
``RobustPromptSampler.get_mask_scores``), with the same float32 arithmetic.

Per proposal (on its 37 x 37 grid mask): ``emd`` = 1 - exact EMD (POT ``ot.emd2``, uniform
weights) between the reference cells and the mask's cells over the cost ``(1 - S) / 2``;
``purity`` = matched points inside / mask cells; ``coverage`` = matched points inside / all
matched points. Score = alpha * emd + beta * purity * coverage^exp. Metric filters (in the
official order coverage, emd, purity) keep ``metric >= min(threshold, max)``. Then either
the score filter (COCO / LVIS) or top-k with a relative threshold picks the masks whose
union is the prediction.

Only the EMD is expensive, and the official code computes it for every proposal. Here it
is computed only where the result can depend on it: purity and coverage first, and EMD
for the proposals that survive those filters; once per distinct grid mask (the EMD is a
function of the grid mask alone); in a thread pool (POT's solver releases the GIL).
Each value is the same ``ot.emd2`` call on the same matrix, so the same number.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from refseg_bench.methods.matcher.proposals import Proposals
from refseg_bench.methods.matcher.settings import Setting


def emd_score(cost_ref: np.ndarray, cols: np.ndarray):
    """1 - ``ot.emd2`` with uniform weights between every row of ``cost_ref``
    (``(r, g*g)`` float32: reference cells x target cells) and the target cells ``cols``
    (``(g*g,)`` bool), exactly as the official call makes it."""
    import ot

    m = cost_ref[:, cols]
    n1, n2 = m.shape
    return 1 - ot.emd2(a=[1.0 / n1 for _ in range(n1)], b=[1.0 / n2 for _ in range(n2)], M=m)


class EmdPool:
    """Exact EMD scores of grid masks, in ``workers`` threads, each distinct mask once."""

    def __init__(self, workers: int) -> None:
        import ot  # noqa: F401  (at set-up: a first import takes seconds, not an episode's)

        self.workers = workers
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None
        self.solved = 0  # ot.emd2 calls made
        self.requested = 0  # scores asked for

    def scores(self, cost_ref: np.ndarray, grids: torch.Tensor) -> list:
        """One score per ``(g, g)`` bool mask of ``grids`` (``(m, g, g)``)."""
        flat = grids.flatten(1).cpu().numpy()
        keys = [row.tobytes() for row in np.packbits(flat, axis=1)]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        todo = list(first.values())
        if self._executor is not None and len(todo) > 1:
            values = list(self._executor.map(lambda i: emd_score(cost_ref, flat[i]), todo))
        else:
            values = [emd_score(cost_ref, flat[i]) for i in todo]
        by_key = dict(zip(first, values, strict=True))
        self.solved += len(todo)
        self.requested += len(keys)
        return [by_key[k] for k in keys]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def purity_coverage(props: Proposals, matched: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n,)`` float32 purity and coverage of every proposal (official arithmetic: Python
    floats, then ``torch.tensor`` + 1e-6)."""
    inside = props.contains(matched).sum(axis=1).tolist()
    area = props.grid.flatten(1).sum(1).tolist()
    purity = torch.tensor([c / max(float(a), 1.0) for c, a in zip(inside, area, strict=True)])
    coverage = torch.tensor([c / matched.shape[0] for c in inside])
    return purity + 1e-6, coverage + 1e-6


def choose(props: Proposals, matched: np.ndarray, cost_ref: np.ndarray, s: Setting,
           pool: EmdPool) -> torch.Tensor:
    """Indices into ``props`` of the masks whose union is the prediction.

    ``matched``: ``(p, 2)`` matched points (pixels); ``cost_ref``: the cost rows of the
    reference cells, ``(r, g*g)`` float32."""
    cfg = s.score_filter
    idx = torch.arange(len(props))
    purity, coverage = purity_coverage(props, matched)
    metric = {"purity": purity, "coverage": coverage}

    def emd_of(rows: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(rows))
        for j, value in enumerate(pool.scores(cost_ref, props.grid[rows])):
            out[j] = value  # float32 storage, as the official per-mask assignment
        return out

    for name in ("coverage", "emd", "purity"):
        if cfg[name] > 0:
            if name == "emd":
                metric["emd"] = emd_of(idx)
            thres = min(cfg[name], metric[name].max())
            keep = torch.where(metric[name] >= thres)[0]
            idx = idx[keep]
            metric = {k: v[keep] for k, v in metric.items()}
    emd = metric["emd"] if "emd" in metric else emd_of(idx)
    scores = s.alpha * emd + s.beta * metric["purity"] * metric["coverage"] ** s.exp
    return idx[_merge(scores, s)]


def _merge(scores: torch.Tensor, s: Setting) -> torch.Tensor:
    """Positions (into ``scores``) of the masks to merge."""
    if s.use_score_filter:
        distances, rank = torch.sort(1 - scores, descending=False)
        norm = (distances - distances.min()) / (distances.max() + 1e-6)
        keep = distances < s.deep_score_filter
        keep[..., 0] = True
        keep = keep * (norm < s.deep_score_norm_filter)
        return rank[keep][:s.num_merging_mask]
    top = scores.topk(min(s.num_merging_mask, scores.size(0)))[1]
    top_scores = scores[top].cpu().numpy()
    if s.topk_scores_threshold > 0:
        top_scores = top_scores / top_scores.max()
    return top[torch.from_numpy(top_scores > s.topk_scores_threshold)]
