"""PerSAM-F's only trained parameters: two mask weights fitted on the references
(Personalize-SAM: ``persam_f.py``, ``Mask_Weights`` and the training loop).

SAM is frozen and the prompt is fixed, so the three high-resolution multimask logits of a
reference are the same at every iteration: they are computed once (as in PR #37 of the
official repository) and only the weighted sum, the loss and the optimiser step repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskWeights(nn.Module):
    """Two learnable weights ``w1, w2`` (init 1/3 each); the first mask gets
    ``w0 = 1 - w1 - w2``, so the three weights always sum to 1."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(2, 1) / 3)

    def full(self) -> Tensor:
        """(3, 1): ``[1 - w1 - w2, w1, w2]``."""
        return torch.cat((1 - self.weights.sum(0).unsqueeze(0), self.weights), dim=0)


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Dice loss with +1 smoothing; ``logits``/``target``: (1, P), target 0/1 float."""
    prob = logits.sigmoid().flatten(1)
    numerator = 2 * (prob * target).sum(-1)
    denominator = prob.sum(-1) + target.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum()


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0
               ) -> Tensor:
    """Sigmoid focal loss (RetinaNet), mean over pixels; ``logits``/``target``: (1, P)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean(1).sum()


@dataclass
class FitResult:
    """``weights`` (3,) fitted mask weights (sum 1); ``losses``: Dice + focal per iteration
    (before that iteration's step)."""

    weights: Tensor
    losses: list[float]


def fit_mask_weights(logits: list[Tensor], targets: list[Tensor], iterations: int = 1000,
                     lr: float = 1e-3, eps: float = 1e-4, weight_decay: float = 0.01
                     ) -> FitResult:
    """Fit the mask weights on k references.

    ``logits``: per reference, (3, P_i) float32 high-resolution multimask logits (flattened
    original-size maps); ``targets``: per reference, (1, P_i) float 0/1 masks. The loss is
    Dice + focal of the weighted logits, averaged over references (k = 1: the official
    loss). AdamW (``eps`` 1e-4, default weight decay 0.01 as in the official code), cosine
    annealing over ``iterations`` steps.
    """
    if len(logits) != len(targets) or not logits:
        raise ValueError(f"need one target per reference; got {len(logits)} logits and "
                         f"{len(targets)} targets")
    model = MaskWeights().to(logits[0].device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    losses = []
    for _ in range(iterations):
        w = model.full()
        per_ref = []
        for lg, tg in zip(logits, targets, strict=True):
            fused = (lg * w).sum(0).unsqueeze(0)
            per_ref.append(dice_loss(fused, tg) + focal_loss(fused, tg))
        loss = per_ref[0] if len(per_ref) == 1 else torch.stack(per_ref).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.detach())
    # One transfer at the end: no device sync inside the loop.
    return FitResult(model.full().detach().flatten(), torch.stack(losses).tolist())
