"""Instance-level matching and merging (official ``Matcher.mask_generation`` and
``RobustPromptSampler.get_mask_scores``), with the same float32 arithmetic.

Per proposal (on its 37 x 37 grid mask): ``emd`` = 1 - exact EMD (POT ``ot.emd2``, uniform
weights) between the reference cells and the mask's cells over the cost ``(1 - S) / 2``;
``purity`` = matched points inside / mask cells; ``coverage`` = matched points inside / all
matched points. Score = alpha * emd + beta * purity * coverage^exp. Metric filters (in the
official order coverage, emd, purity) keep ``metric >= min(threshold, max)``. Then either
the score filter (COCO / LVIS) or top-k with a relative threshold picks the masks whose
union is the prediction.

Only the EMD is expensive, and the official code computes it for every proposal. Here
(``emd.py``) purity and coverage come first and the EMD only for proposals that survive
those filters; under top-k merging, only for the proposals whose upper bound could still
be merged (:func:`_bounded_topk`); once per distinct grid mask; in a thread pool. Each
value is the same ``ot.emd2`` call on the same matrix, so the same number, and the merged
masks are the official ones.
"""

from __future__ import annotations

import numpy as np
import torch

from refseg_bench.methods.matcher.emd import EmdPool
from refseg_bench.methods.matcher.proposals import Proposals
from refseg_bench.methods.matcher.settings import Setting


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

    for name in ("coverage", "emd", "purity"):
        if cfg[name] > 0:
            if name == "emd":
                metric["emd"] = _emd_tensor(pool.scores(cost_ref, props.grid[idx]))
            thres = min(cfg[name], metric[name].max())
            keep = torch.where(metric[name] >= thres)[0]
            idx = idx[keep]
            metric = {k: v[keep] for k, v in metric.items()}
    if "emd" not in metric:
        ep = pool.episode(cost_ref, props.grid[idx])
        if not s.use_score_filter and s.alpha > 0:
            picked = _bounded_topk(ep, metric, s)
            if picked is not None:
                return idx[picked]
        ep.solve(list(range(len(idx))))
        metric["emd"] = _emd_tensor(ep.exact(i) for i in range(len(idx)))
    return idx[_merge(_scores(metric["emd"], metric, s), s)]


def _emd_tensor(values) -> torch.Tensor:
    """``(m,)`` float32 from Python floats (the official per-mask assignment into a float32
    tensor rounds each to nearest, as this does)."""
    return torch.tensor(list(values), dtype=torch.float32)


def _scores(emd: torch.Tensor, metric: dict, s: Setting, rows=slice(None)) -> torch.Tensor:
    """The official score, element by element: alpha * emd + beta * purity * coverage^exp
    (float32; every operation is monotone in ``emd`` for alpha > 0)."""
    return s.alpha * emd + s.beta * metric["purity"][rows] * metric["coverage"][rows] ** s.exp


# Relative slack on the ratio test of a bound: float32 rounding of a score over the maximum
# and of the threshold each move a ratio by < 1.2e-7.
_RATIO_SLACK = 1e-6


def _bounded_topk(ep, metric: dict, s: Setting) -> torch.Tensor | None:
    """The top-k merge of :func:`_merge` with exact EMDs only where they can change it.

    A proposal is left unsolved once its score's upper bound shows it cannot be merged: at
    least k solved scores are strictly above it, or it fails the ratio test against the best
    solved score (a lower bound of the maximum). One that fails the ratio test may still be
    in the true top k, but it only displaces scores below it, which fail too. Solves go
    best upper bound first. Returns positions into ``metric``'s rows, or None when solved
    scores tie at the k-th place (torch.topk's tie order then needs every score) or where
    bounds are not valid (``EpisodeEmd.boundable``)."""
    n, k, thr = len(metric["purity"]), s.num_merging_mask, s.topk_scores_threshold
    if n == 0 or not ep.boundable:
        return None
    ep.solve([0], keep_dual=True)  # one exact solve whose dual bounds all the others
    upper = ep.upper_scores(list(range(n)))
    while True:
        if not ep.all_optimal:
            return None
        known = [i for i in range(n) if ep.known(i)]
        exact = _scores(_emd_tensor(ep.exact(i) for i in known), metric, s, known)
        unknown = [i for i in range(n) if not ep.known(i)]
        high = _scores(_emd_tensor(upper[unknown]), metric, s, unknown)
        ranked = exact.sort(descending=True).values
        best = float(ranked[0])
        out = torch.zeros(len(unknown), dtype=torch.bool)
        if len(known) >= k:
            out |= high < ranked[k - 1]
        if thr <= 0:
            out |= high <= thr
        elif best > 0:  # (the ratio to a maximum <= 0 has no order to use)
            out |= high < thr * best * (1 - _RATIO_SLACK)
        todo = [unknown[j] for j in torch.argsort(high, descending=True, stable=True).tolist()
                if not out[j]]
        if not todo:
            break
        ep.solve(todo[:max(ep.pool.workers, k - len(known))])
    if len(known) > k and ranked[k - 1] == ranked[k]:
        return None
    return torch.tensor(known)[_merge(exact, s)]


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
