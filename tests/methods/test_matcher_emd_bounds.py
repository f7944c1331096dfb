"""Matcher's EMD on demand: the dual lower bound never exceeds the exact EMD, and the top-k
merge with bounds picks the same masks as scoring every proposal (the official way), while
solving fewer EMDs on overlapping proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg_bench.methods.matcher import scoring
from refseg_bench.methods.matcher.emd import EmdPool, _solve, dual_lower_bounds, emd_score
from refseg_bench.methods.matcher.proposals import Proposals
from refseg_bench.methods.matcher.settings import SETTINGS

CELL = 14  # pixels per grid cell, as the official 518 / 37


def _problem(seed: int, g: int, n: int, refs: int, flip: float):
    """Random unit features (cost ``(1 - S) / 2``) and ``n`` grid masks that perturb one
    base mask by flipping a ``flip`` share of cells (proposals of one episode overlap)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(refs + g * g, 8))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    cost = ((1 - f[:refs] @ f[refs:].T) / 2).astype(np.float32)
    base = rng.random(g * g) < 0.6
    cells = base[None] ^ (rng.random((n, g * g)) < flip)
    cells[:, 0] = True  # never an empty grid mask
    return rng, cost, cells


def _proposals(cells: np.ndarray, g: int) -> Proposals:
    pix = np.kron(cells.reshape(-1, g, g), np.ones((CELL, CELL), bool)).astype(bool)
    return Proposals(np.packbits(pix, axis=-1), torch.ones(len(cells)),
                     torch.zeros(len(cells), 4, dtype=torch.int64))


def _matched(rng, g: int, p: int) -> np.ndarray:
    return rng.integers(0, g * CELL, size=(p, 2))


def _every_emd(props: Proposals, matched, cost, s) -> torch.Tensor:
    """The official way: every proposal's EMD, then the top-k merge."""
    pool = EmdPool(1)
    purity, coverage = scoring.purity_coverage(props, matched)
    emd = scoring._emd_tensor(pool.scores(cost, props.grid))
    metric = {"purity": purity, "coverage": coverage}
    return torch.arange(len(props))[scoring._merge(scoring._scores(emd, metric, s), s)]


def _choose_as_official(props: Proposals, matched, cost, s, workers: int = 1) -> EmdPool:
    """Runs ``scoring.choose``, asserts it merges the official masks; returns its pool."""
    pool = EmdPool(workers)
    chosen = scoring.choose(props, matched, cost, s, pool)
    pool.close()
    assert sorted(chosen.tolist()) == sorted(_every_emd(props, matched, cost, s).tolist())
    return pool


def _distinct(props: Proposals) -> int:
    return len({r.numpy().tobytes() for r in props.grid})


@pytest.mark.parametrize("seed", range(6))
def test_dual_bound_is_below_the_exact_emd(seed):
    _, cost, cells = _problem(seed, g=7, n=12, refs=9, flip=0.15)
    _, (u, v), optimal = _solve(cost, cells[0])
    assert optimal
    bounds = dual_lower_bounds(cost.astype(np.float64), cells, cells[0], u, v)
    exact = np.array([1 - emd_score(cost, cols) for cols in cells])
    assert (bounds <= exact + 1e-12).all()
    assert (exact - bounds).max() > 1e-4  # a bound, not the value
    assert bounds[0] == pytest.approx(exact[0], abs=1e-6)  # its own dual: optimal (POT returns it
    # in the cost's float32, hence the 1e-6)


@pytest.mark.parametrize("setting", ["fss", "fss_5shot"])
@pytest.mark.parametrize("seed", range(12))
def test_bounded_topk_picks_what_every_emd_picks(setting, seed):
    s = SETTINGS[setting]
    g = 6
    n = [3, 8, 30, 60][seed % 4]
    rng, cost, cells = _problem(100 + seed, g=g, n=n, refs=7, flip=[0.05, 0.2, 0.5][seed % 3])
    if seed % 5 == 0:
        cells[n // 2:] = cells[: n - n // 2]  # repeated grid masks: exact ties
    props = _proposals(cells, g)
    matched = _matched(rng, g, 12)
    pool = _choose_as_official(props, matched, cost, s, workers=2)
    assert pool.requested == n and pool.solved <= _distinct(props)


def test_overlapping_proposals_skip_most_emds():
    s = SETTINGS["fss"]
    rng, cost, cells = _problem(7, g=10, n=80, refs=12, flip=0.03)
    props, matched = _proposals(cells, 10), _matched(rng, 10, 20)
    pool = _choose_as_official(props, matched, cost, s)
    assert pool.requested == 80 and pool.solved < 40


def test_a_tie_at_the_kth_place_falls_back_to_every_emd():
    """Two proposals with the same grid mask tie exactly; at the k-th place torch.topk's
    order decides, so every score is computed and the official merge runs."""
    s = SETTINGS["fss_5shot"]  # k = 5
    rng, cost, cells = _problem(3, g=6, n=12, refs=6, flip=0.1)
    matched = _matched(rng, 6, 10)
    props = _proposals(cells, 6)
    purity, coverage = scoring.purity_coverage(props, matched)
    emd = scoring._emd_tensor(EmdPool(1).scores(cost, props.grid))
    metric = {"purity": purity, "coverage": coverage}
    order = torch.argsort(scoring._scores(emd, metric, s), descending=True).tolist()
    cells[order[5]] = cells[order[4]]  # the 6th copies the 5th: equal pixels, equal scores
    props = _proposals(cells, 6)
    assert _choose_as_official(props, matched, cost, s).solved == 11  # every distinct mask


def _case(seed=7):
    rng, cost, cells = _problem(seed, g=8, n=40, refs=10, flip=0.04)
    return _proposals(cells, 8), _matched(rng, 8, 15), cost


def test_large_problems_solve_every_emd(monkeypatch):
    """Past BOUND_MAX_NODES a skipped call might have stopped unfinished (its value then no
    bound covers): every distinct mask is solved, as the official code does."""
    from refseg_bench.methods.matcher import emd

    props, matched, cost = _case()
    monkeypatch.setattr(emd, "BOUND_MAX_NODES", 20)
    assert _choose_as_official(props, matched, cost, SETTINGS["fss"]).solved == _distinct(props)


def test_an_unfinished_solve_switches_to_every_emd(monkeypatch):
    from refseg_bench.methods.matcher import emd

    props, matched, cost = _case()
    real = emd._solve
    monkeypatch.setattr(emd, "_solve", lambda c, cols: (*real(c, cols)[:2], False))
    assert _choose_as_official(props, matched, cost, SETTINGS["fss"]).solved == _distinct(props)
