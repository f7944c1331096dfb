"""Patch-level matching and the robust prompt sampler (official ``matcher/Matcher.py``:
``patch_level_matching``, ``clustering``, ``RobustPromptSampler.sample_points``;
``matcher/k_means.py``), step for step so that the same inputs and RNG states give the
same points.

Random numbers: k-means++ draws from a torch CPU generator (the official code uses torch's
global one), subsets from a :class:`random.Random` (the official code uses the global
``random`` module); :class:`Streams` holds both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from refseg_bench.methods.matcher.prep import PATCH


@dataclass
class Streams:
    """The two random streams Matcher consumes: ``py`` (subset sampling) and ``torch``
    (k-means++ seeding)."""

    py: random.Random
    torch: torch.Generator

    @classmethod
    def seeded(cls, seed: int, loader_draw: bool) -> Streams:
        """Both seeded with ``seed``; ``loader_draw`` replays the int64 draw the official
        ``DataLoader`` takes from torch's generator when iteration starts."""
        gen = torch.Generator().manual_seed(seed)
        if loader_draw:
            torch.empty((), dtype=torch.int64).random_(generator=gen)
        return cls(random.Random(seed), gen)


@dataclass
class Matches:
    """Result of bidirectional matching on a ``g x g`` patch grid (``g = S / 14``).

    ``points``: ``(n, 2)`` int64 pixel ``(x, y)`` at patch centres of the kept matches, in
    the official (Python ``set``) order; ``box``: ``(4,)`` XYXY around them or None;
    ``cost``: ``(k*g*g, g*g)`` float32 ``(1 - S) / 2`` on the features' device."""

    points: np.ndarray
    box: np.ndarray | None
    cost: torch.Tensor


def bidirectional_match(ref_feats: torch.Tensor, tar_feat: torch.Tensor, pool: torch.Tensor,
                        grid: int, img_size: int, use_box: bool) -> Matches:
    """Forward Hungarian (masked reference patches -> target), reverse Hungarian (matched
    target patches -> every reference patch), keep matches whose reverse partner is in the
    reference mask (all if none is), then the top half by similarity beyond 40.

    ``ref_feats``: ``(k*g*g, C)``, ``tar_feat``: ``(g*g, C)``, both L2-normalised;
    ``pool``: ``(k*g*g,)`` float 0/1 reference cells."""
    device = ref_feats.device
    sim = ref_feats @ tar_feat.t()
    cost = (1 - sim) / 2
    in_mask = pool.flatten().bool()
    sim_fwd = sim[in_mask]
    fwd = [torch.as_tensor(i, dtype=torch.int64, device=device)
           for i in linear_sum_assignment(sim_fwd.cpu(), maximize=True)]
    scores = sim_fwd[fwd[0], fwd[1]]
    mask_idx = pool.flatten().nonzero()[:, 0]
    rev = [torch.as_tensor(i, dtype=torch.int64, device=device)
           for i in linear_sum_assignment(sim.t()[fwd[1]].cpu(), maximize=True)]
    keep = torch.isin(rev[1], mask_idx)
    if not (keep == False).all().item():  # noqa: E712  (the official test, kept as is)
        fwd = [fwd[0][keep], fwd[1][keep]]
        scores = scores[keep]
    n_keep = len(scores) // 2 if len(scores) > 40 else len(scores)
    _, order = torch.sort(scores, descending=True)
    target_idx = fwd[1][order[:n_keep]]
    unique = torch.tensor(list(set(target_idx.cpu().tolist())))  # the official set order
    xs = ((unique % grid) * PATCH + PATCH // 2).tolist()
    ys = ((unique // grid) * PATCH + PATCH // 2).tolist()
    points = np.array([[int(x), int(y)] for x, y in zip(xs, ys, strict=True)
                       if int(x) < img_size and int(y) < img_size])
    box = None
    if use_box:
        box = np.array([max(points[:, 0].min(), 0), max(points[:, 1].min(), 0),
                        min(points[:, 0].max(), img_size - 1),
                        min(points[:, 1].max(), img_size - 1)])
    return Matches(points, box, cost)


def kmeans_pp(points: np.ndarray, k: int, gen: torch.Generator,
              max_iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding then Lloyd iterations on ``(n, 2)`` points (official
    ``kmeans_pp``): returns ``(k, 2)`` float32 centres and ``(n,)`` assignments."""
    x = torch.from_numpy(points).float()
    centers = x[torch.randint(x.size(0), (1,), generator=gen)]
    for _ in range(k - 1):
        dist = torch.cdist(x, centers).min(dim=1).values + 1e-6
        probs = dist ** 2 / torch.sum(dist ** 2)
        centers = torch.cat([centers, x[torch.multinomial(probs, num_samples=1,
                                                          generator=gen)]], dim=0)
    assignment = None
    for _ in range(max_iters):
        assignment = torch.argmin(torch.cdist(x, centers), dim=1)
        new = torch.stack([torch.mean(x[assignment == c], dim=0)
                           if torch.sum(assignment == c) > 0 else centers[c]
                           for c in range(k)], dim=0)
        if torch.isnan(new).any():
            raise RuntimeError("k-means++ produced NaN centres")
        if torch.all(torch.eq(new, centers)):
            break
        centers = new.clone()
    return centers, assignment


def cluster_centres(points: np.ndarray, num_centers: int, gen: torch.Generator,
                    max_restarts: int = 10_000) -> np.ndarray:
    """``min(num_centers, n)`` k-means++ centres as ``(c, 2)`` int64 pixels, re-running
    until every cluster is non-empty (the official ``clustering``; it retries forever, we
    stop after ``max_restarts`` with an error)."""
    k = min(num_centers, len(points))
    for _ in range(max_restarts):
        centers, assignment = kmeans_pp(points, k, gen)
        if torch.unique(assignment).shape[0] == k:
            return centers.numpy().astype(np.int64)  # float32 -> int64, truncating
    raise RuntimeError(f"k-means++ left an empty cluster {max_restarts} times in a row on "
                       f"{len(points)} points")


def colex_combinations(n: int, k: int) -> list[list[int]]:
    """All ``k``-subsets of ``range(n)`` in the official ``combinations`` order (sorted by
    largest element, then recursively: colexicographic)."""
    if k > n:
        return []
    if k == 0:
        return [[]]
    if k == n:
        return [list(range(n))]
    return [c + [i] for i in range(n) for c in colex_combinations(i, k - 1)]


def sample_prompts(points: np.ndarray, sample_range: tuple[int, int], max_iterations: int,
                   rng: random.Random) -> list[np.ndarray]:
    """Point subsets, one ``(m, i, 2)`` array per size ``i`` in ``sample_range`` (capped at
    ``n``): ``max_iterations`` random subsets when there are more than 8 points, else
    every combination (official ``sample_points``; all labels are positive)."""
    n = len(points)
    out = []
    for size in range(min(sample_range[0], n), min(sample_range[1], n) + 1):
        if n > 8:
            index = [rng.sample(range(n), size) for _ in range(max_iterations)]
        else:
            index = colex_combinations(n, size)
        out.append(np.take(points, index, axis=0))
    return out
