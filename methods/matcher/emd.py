"""Exact EMD scores of an episode's grid masks, solved only where they are needed.

The official code calls POT's ``ot.emd2`` (uniform weights) once per proposal, between the
reference cells and the proposal's cells of the 37 x 37 grid, over the cost ``(1 - S) / 2``.
Each exact value here is that same call on the same matrix, so the same number; what
changes is how many calls are made:

- each distinct grid mask is solved once (the value depends on the grid mask alone);
- solves run in a thread pool (POT's solver releases the GIL);
- a proposal that cannot be selected is not solved at all. An optimal dual ``(u, v)`` of
  one solved mask gives a lower bound on the EMD of any other mask (weak duality: keep
  ``v`` on the shared cells, complete it on the new cells with ``min_i C_ij - u_i``, then
  re-fit ``u_i = min_j C_ij - v_j``; ``mean(u) + mean(v)`` is feasible, hence <= the
  optimum). Proposals of one episode overlap heavily, so the bound is within about 1e-5 of
  the exact value while scores spread over 1e-2: :func:`upper_scores` is 1 minus it, and
  ``scoring.choose`` solves exactly only the masks whose upper bound could still reach the
  selection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# Added to every lower bound's complement: the bound is exact arithmetic's, computed in
# float64 (error ~1e-13 on values <= 1); ot.emd2's float64 sum has a similar error. 1e-8
# covers both by four orders and is far below the ~1e-4 between neighbouring scores.
BOUND_MARGIN = 1e-8
# Bounds are used only while every problem of the episode has at most this many nodes
# (reference + target cells; 2 x 37 x 37, any one-shot problem at 518). There the solver
# needs under 50,000 of its 100,000 iterations (measured on random and clustered 1024-d
# features, 1369 x 1369), so a call that is skipped would have reached its optimum. Past
# the limit the official value is that of an unfinished plan, which no bound covers.
BOUND_MAX_NODES = 2 * 37 * 37


def _solve(cost_ref: np.ndarray, cols: np.ndarray):
    """The official ``ot.emd2`` call on ``cost_ref[:, cols]``: ``(1 - emd, (u, v), optimal)``
    (``optimal``: the solver reached the optimum within its iteration limit)."""
    import ot

    m = cost_ref[:, cols]
    n1, n2 = m.shape
    a, b = [1.0 / n1 for _ in range(n1)], [1.0 / n2 for _ in range(n2)]
    value, log = ot.emd2(a=a, b=b, M=m, log=True)  # the same solver call; log adds the duals
    dual = (np.asarray(log["u"], np.float64), np.asarray(log["v"], np.float64))
    return 1 - value, dual, log["result_code"] == 1


def emd_score(cost_ref: np.ndarray, cols: np.ndarray) -> float:
    """1 - ``ot.emd2`` with uniform weights between every row of ``cost_ref``
    (``(r, g*g)`` float32: reference cells x target cells) and the target cells ``cols``
    (``(g*g,)`` bool), exactly as the official call makes it."""
    return _solve(cost_ref, cols)[0]


def dual_lower_bounds(cost: np.ndarray, masks: np.ndarray, source_cols: np.ndarray,
                      u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Lower bounds on the EMD (uniform weights) of ``cost[:, cols]`` for every row ``cols``
    of ``masks``, from a dual ``(u, v)`` of the problem on ``source_cols``.

    ``cost``: ``(r, g*g)`` float64; ``masks``: ``(m, g*g)`` bool; ``source_cols``: ``(g*g,)``
    bool; ``u``: ``(r,)``; ``v``: ``(source_cols.sum(),)``. Returns ``(m,)`` float64, in the
    cost's units."""
    full = (cost - u[:, None]).min(axis=0)  # v_j on cells outside the source mask
    full[source_cols] = v
    slack = cost - full[None, :]  # u_i = min over the mask's cells: u_i + v_j <= C_ij
    out = np.empty(len(masks))
    for t, cols in enumerate(masks):
        out[t] = slack[:, cols].min(axis=1).mean() + full[cols].mean()
    return out


class EmdPool:
    """Runs exact EMD solves in ``workers`` threads and counts them across episodes."""

    def __init__(self, workers: int) -> None:
        import ot  # noqa: F401  (at set-up: a first import takes seconds, not an episode's)

        self.workers = workers
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None
        self.solved = 0  # ot.emd2 calls made
        self.requested = 0  # scores the official code computes (one per scored proposal)

    def map(self, fn, items: list) -> list:
        if self._executor is not None and len(items) > 1:
            return list(self._executor.map(fn, items))
        return [fn(x) for x in items]

    def episode(self, cost_ref: np.ndarray, grids: torch.Tensor) -> EpisodeEmd:
        """The EMD scores of one episode's ``(m, g, g)`` bool grid masks, on demand."""
        self.requested += len(grids)
        return EpisodeEmd(self, cost_ref, grids)

    def scores(self, cost_ref: np.ndarray, grids: torch.Tensor) -> list[float]:
        """Every score of ``grids`` (``(m, g, g)`` bool), exactly."""
        ep = self.episode(cost_ref, grids)
        ep.solve(list(range(len(grids))))
        return [ep.exact(i) for i in range(len(grids))]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class EpisodeEmd:
    """Exact scores (solved on request, each distinct grid mask once) and upper bounds of
    one episode's grid masks. Indices are rows of ``grids``."""

    def __init__(self, pool: EmdPool, cost_ref: np.ndarray, grids: torch.Tensor) -> None:
        self.pool, self.cost_ref = pool, cost_ref
        self.flat = grids.flatten(1).cpu().numpy()
        keys = [row.tobytes() for row in np.packbits(self.flat, axis=1)]
        first: dict[bytes, int] = {}
        self.rep = np.array([first.setdefault(k, i) for i, k in enumerate(keys)])
        self._value: dict[int, float] = {}  # representative row -> 1 - emd
        self._dual: tuple[int, np.ndarray, np.ndarray] | None = None  # (row, u, v)
        self._cost64: np.ndarray | None = None
        self.all_optimal = True  # every solve so far reached its optimum

    @property
    def boundable(self) -> bool:
        """Upper bounds are valid: small enough problems and no unfinished solve."""
        nodes = self.cost_ref.shape[0] + int(self.flat.sum(axis=1).max(initial=0))
        return self.all_optimal and nodes <= BOUND_MAX_NODES

    def known(self, i: int) -> bool:
        return int(self.rep[i]) in self._value

    def exact(self, i: int) -> float:
        return self._value[int(self.rep[i])]

    def solve(self, rows: list[int], keep_dual: bool = False) -> None:
        """Solve the distinct masks of ``rows`` not solved yet (``keep_dual``: keep the
        dual of the first, which :meth:`upper_scores` bounds the others with)."""
        todo = sorted({int(self.rep[i]) for i in rows} - set(self._value))
        out = self.pool.map(lambda r: _solve(self.cost_ref, self.flat[r]), todo)
        self.pool.solved += len(todo)
        for r, (value, _, optimal) in zip(todo, out, strict=True):
            self._value[r] = value
            self.all_optimal &= optimal
        if keep_dual and todo:
            self._dual = (todo[0], *out[0][1])

    def upper_scores(self, rows: list[int]) -> np.ndarray:
        """``(len(rows),)`` float64 upper bounds on ``1 - emd`` of ``rows`` from the kept
        dual (exact for solved masks)."""
        if self._cost64 is None:
            self._cost64 = self.cost_ref.astype(np.float64)
        r, u, v = self._dual
        out = 1 - dual_lower_bounds(self._cost64, self.flat[rows], self.flat[r], u, v)
        out += BOUND_MARGIN
        for j, i in enumerate(rows):
            if self.known(i):
                out[j] = self.exact(i)
        return out
