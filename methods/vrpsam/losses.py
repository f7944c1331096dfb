"""VRP-SAM's training objective: binary cross-entropy with logits plus Dice.

Both terms are computed on the mask logits at the encoder input size (512x512 officially)
against the query label nearest-resized to that size. As in the official
``compute_objective``, ignore pixels (255) count as background: the official PASCAL loader
turns every pixel that is not the episode class, boundaries included, into 0 before the
loss (boundaries are ignored only when scoring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` divided by the batch
    size (the official normalisation), with ``p = sigmoid(logits)``.

    ``logits``: ``(B, ...)`` float; ``target``: same number of elements per item, 0/1.
    """
    p = logits.sigmoid().flatten(1)
    t = target.float().flatten(1)
    numerator = 2 * (p * t).sum(-1)
    denominator = p.sum(-1) + t.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / logits.shape[0]


def vrp_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits (mean over pixels) + Dice. ``logits``: ``(B, 1, S, S)``;
    ``target``: ``(B, S, S)`` with 1 = foreground, anything else (0, 255) = background."""
    t = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits.squeeze(1), t)
    return bce + dice_loss(logits, t)
