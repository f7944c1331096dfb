"""The scorer: per-episode intersection/union totals and the fold mIoU / FB-IoU built from
them (docs/protocols.md §7).

Two layers, as in torchmetrics: ``episode_totals`` is the functional core (a batch of
predictions and labels in, an ``(B, 4)`` int64 table out) and ``Scorer`` is a thin stateful
wrapper that sums those totals per class. Every piece of state is an integer sum, so ranks,
batches and resumed runs combine by addition and the result never depends on sharding.

Conventions, each chosen to match the official codebases:

- **Threshold**: foreground is ``pred > threshold`` (strict). HSNet and PFENet take the
  argmax of two-channel logits, which picks background on a tie, i.e. foreground iff
  ``p_fg > 0.5``; SAM and SAM 2 predictors binarise with ``logits > 0``, the same rule.
  (VRP-SAM's ``sigmoid >= 0.5`` differs only on exact ties.) Bool and 0/1 masks are
  unaffected by the choice.
- **Ignore**: with ``ignore=True`` label-255 pixels leave both the intersection and the
  union of both foreground and background (PFENet ``intersectionAndUnionGPU``, HSNet
  ``Evaluator``). With ``ignore=False`` a 255 pixel is background of the label.
- **Resolution**: ``size=None`` scores at the label's original size. ``size=N`` is how
  HSNet, VRP-SAM and Matcher score: the label is nearest-resized to ``N x N``
  (``F.interpolate(mode="nearest")``, as hsnet ``data/pascal.py`` does) and the predicted
  probability is bilinearly resized to ``N x N`` (``align_corners=False``, no antialias)
  and then thresholded. A resized hard mask yields 0.5 on some edge pixels, which the
  strict threshold sends to background.
- **Class IoU** = sum of intersections / max(sum of unions, 1) over the class's episodes
  (hsnet ``common/logger.py``): a sampled class whose summed union is 0 scores 0.
  A class never sampled scores 0 in the fold mean and is listed in ``unsampled_classes``.
- **FB-IoU** = mean of foreground and background IoU, each pooled over all episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from refseg_bench.mask_counts import ScoringError, count_totals
from refseg_bench.stats import bootstrap_miou

__all__ = ["TOTAL_COLUMNS", "ScoreSummary", "Scorer", "ScoringError", "bootstrap_miou",
           "episode_totals"]

TOTAL_COLUMNS = ("fg_inter", "fg_union", "bg_inter", "bg_union")

Mask = torch.Tensor | np.ndarray


# --- functional core --------------------------------------------------------------------


def episode_totals(preds: Sequence[Mask], labels: Sequence[Mask], *, size: int | None = None,
                   ignore: bool = True, threshold: float = 0.5) -> torch.Tensor:
    """Per-episode foreground and background intersection and union.

    Batched: the whole batch is counted with a few byte operations on the predictions'
    device (CPU or CUDA), never a Python loop over pixels.

    Args:
        preds: ``B`` tensors ``(H_i, W_i)``: float foreground probability in [0, 1], or a
            bool / 0-1 mask, at the query's original size; all on one device.
        labels: ``B`` tensors or arrays ``(H_i, W_i)`` uint8 (or bool) with 0 = background,
            1 = the episode class, 255 = ignore; moved to the predictions' device.
        size: ``None`` scores at original size; ``N`` scores at ``N x N`` (module doc).
        ignore: drop label-255 pixels from every area (else they count as background).
        threshold: foreground is ``pred > threshold``.

    Returns:
        ``(B, 4)`` int64 on the predictions' device, columns ``TOTAL_COLUMNS``.

    Raises:
        ScoringError: mismatched counts or shapes, predictions on several devices, float
            predictions outside [0, 1], labels with values outside {0, 1, 255}.
    """
    if len(preds) != len(labels):
        raise ScoringError(f"got {len(preds)} predictions but {len(labels)} labels; "
                           "pass one label per predicted episode.")
    if len(preds) == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ScoringError(f"size must be None or a positive int, got {size!r}")
    device = preds[0].device
    labels = [_as_label(lab, i) for i, lab in enumerate(labels)]
    for i, (p, lab) in enumerate(zip(preds, labels, strict=True)):
        if p.dim() != 2 or tuple(p.shape) != tuple(lab.shape):
            raise ScoringError(
                f"episode {i}: prediction has shape {tuple(p.shape)} but its label has shape "
                f"{tuple(lab.shape)}; predict one (H, W) map at the query's original size.")
        if p.device != device:
            raise ScoringError(f"episode {i}: prediction is on {p.device} but episode 0's is "
                               f"on {device}; move all predictions of a batch to one device.")
    return count_totals(preds, labels, device, size=size, ignore=ignore, threshold=threshold)


def _as_label(label: Mask, index: int) -> torch.Tensor:
    label = torch.as_tensor(label)
    if label.dtype == torch.bool:
        return label.to(torch.uint8)
    if label.dtype != torch.uint8:
        raise ScoringError(f"episode {index}: label dtype is {label.dtype}, expected uint8 "
                           "with values 0/1/255; convert after checking the values.")
    return label


# --- stateful wrapper -------------------------------------------------------------------


@dataclass
class ScoreSummary:
    """Scores of one fold. IoUs are percentages.

    ``miou`` averages ``class_iou`` over all the fold's classes, an unsampled class counting
    as 0 (its ``class_iou`` is ``None`` and it is listed in ``unsampled_classes``).
    ``fbiou`` is ½ (``fg_iou`` + ``bg_iou``), each pooled over all episodes.
    """

    miou: float
    fbiou: float
    fg_iou: float
    bg_iou: float
    class_iou: dict[int, float | None]
    class_episodes: dict[int, int]
    n_episodes: int
    unsampled_classes: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


class Scorer:
    """Sums per-episode totals per class of one fold; ``compute`` turns them into scores.

    State (all int64, on ``device``, indexed by position in ``class_ids``): ``inter``,
    ``union`` and ``episodes`` of shape ``(C,)``, and ``fb`` of shape ``(4,)`` holding the
    summed ``TOTAL_COLUMNS``. Two scorers over disjoint episodes add up to the scorer over
    all of them (``merge``, ``all_reduce``).
    """

    def __init__(self, class_ids: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.class_ids = [int(c) for c in class_ids]
        if len(set(self.class_ids)) != len(self.class_ids) or not self.class_ids:
            raise ScoringError(f"class_ids must be a non-empty list of distinct ids, got "
                               f"{self.class_ids}")
        self._position = {c: i for i, c in enumerate(self.class_ids)}
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        c = len(self.class_ids)
        self.inter = torch.zeros(c, dtype=torch.int64, device=self.device)
        self.union = torch.zeros(c, dtype=torch.int64, device=self.device)
        self.episodes = torch.zeros(c, dtype=torch.int64, device=self.device)
        self.fb = torch.zeros(4, dtype=torch.int64, device=self.device)
        self._reduced = False

    def update(self, preds: Sequence[Mask], labels: Sequence[Mask], class_ids: Sequence[int],
               *, size: int | None = None, ignore: bool = True) -> torch.Tensor:
        """Score a batch (see ``episode_totals``) and add it; returns its ``(B, 4)`` totals
        on the predictions' device, for the per-episode table."""
        if len(class_ids) != len(preds):
            raise ScoringError(f"got {len(preds)} predictions but {len(class_ids)} class ids")
        positions = self._positions(class_ids)  # fail before the work, not after
        totals = episode_totals(preds, labels, size=size, ignore=ignore)
        self._add(positions, totals)
        return totals

    def add(self, class_ids: Sequence[int], totals: torch.Tensor) -> None:
        """Add already computed ``(B, 4)`` totals, e.g. rows of a resumed run's table."""
        totals = torch.as_tensor(totals)
        if totals.dim() != 2 or totals.shape[1] != 4 or totals.shape[0] != len(class_ids):
            raise ScoringError(f"totals must have shape ({len(class_ids)}, 4) for "
                               f"{len(class_ids)} class ids, got {tuple(totals.shape)}")
        if totals.is_floating_point() or totals.dtype == torch.bool:
            raise ScoringError(f"totals must be integer pixel counts, got {totals.dtype}")
        self._add(self._positions(class_ids), totals)

    def _positions(self, class_ids: Sequence[int]) -> torch.Tensor:
        unknown = sorted({int(c) for c in class_ids} - self._position.keys())
        if unknown:
            raise ScoringError(f"class ids {unknown} are not classes of this fold "
                               f"{self.class_ids}; score each episode with its fold's scorer.")
        return torch.tensor([self._position[int(c)] for c in class_ids], dtype=torch.int64,
                            device=self.device)

    def _add(self, positions: torch.Tensor, totals: torch.Tensor) -> None:
        if self._reduced:
            raise RuntimeError("this scorer already holds the totals of all ranks "
                               "(all_reduce was called); reset() it before adding episodes.")
        totals = totals.to(self.device, torch.int64)
        self.inter.index_add_(0, positions, totals[:, 0])
        self.union.index_add_(0, positions, totals[:, 1])
        self.episodes.index_add_(0, positions, torch.ones_like(positions))
        self.fb += totals.sum(0)

    def merge(self, other: Scorer) -> None:
        """Add another scorer's state (same fold classes, disjoint episodes)."""
        if other.class_ids != self.class_ids:
            raise ScoringError(f"cannot merge scorers of different classes: {self.class_ids} "
                               f"vs {other.class_ids}")
        for name in ("inter", "union", "episodes", "fb"):
            getattr(self, name).add_(getattr(other, name).to(self.device))

    def all_reduce(self) -> None:
        """Sum the state over all ``torch.distributed`` ranks (no-op without a process
        group). Afterwards every rank holds the global totals; a second call would count
        them twice, so it raises."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if self._reduced:
            raise RuntimeError("all_reduce was already called on this scorer")
        flat = torch.cat([self.inter, self.union, self.episodes, self.fb])
        if dist.get_backend() == "nccl" and flat.device.type != "cuda":
            flat = flat.cuda()  # NCCL reduces CUDA tensors only
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        c = len(self.class_ids)
        self.inter, self.union, self.episodes, self.fb = (
            t.to(self.device) for t in flat.split([c, c, c, 4]))
        self._reduced = True

    def compute(self) -> ScoreSummary:
        inter, union, episodes, fb = (t.cpu().numpy() for t in
                                      (self.inter, self.union, self.episodes, self.fb))
        iou = 100.0 * inter / np.maximum(union, 1)
        sampled = episodes > 0
        fg_iou, bg_iou = (100.0 * fb[i] / max(int(fb[i + 1]), 1) for i in (0, 2))
        return ScoreSummary(
            miou=float(np.where(sampled, iou, 0.0).mean()),
            fbiou=float((fg_iou + bg_iou) / 2),
            fg_iou=float(fg_iou),
            bg_iou=float(bg_iou),
            class_iou={c: float(iou[i]) if sampled[i] else None
                       for i, c in enumerate(self.class_ids)},
            class_episodes={c: int(episodes[i]) for i, c in enumerate(self.class_ids)},
            n_episodes=int(episodes.sum()),
            unsampled_classes=[c for i, c in enumerate(self.class_ids) if not sampled[i]],
        )
