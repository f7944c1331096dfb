"""FSSAM's training objective: the weighted Dice loss of ``model/FSSAM.py`` (the only loss;
the auxiliary terms are zero).

``1 - 2 sum(p t) / max(sum(p^2) + sum(t^2), 1e-8)`` per image with ``p = sigmoid(logits)``
and ``t = (label == 1)`` (void pixels, 255, count as background), summed over the batch and
divided by its size. Computed at the network input size (512 officially).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``logits``: ``(B, 1, S, S)`` or ``(B, S, S)``; ``label``: ``(B, S, S)`` 0/1/255.
    Returns a scalar."""
    t = (label == 1).float().flatten(1)
    p = torch.sigmoid(logits.float()).reshape(t.shape)
    denominator = torch.clamp((p ** 2).sum(-1) + (t ** 2).sum(-1), min=EPS)
    loss = 1 - 2 * (t * p).sum(-1) / denominator
    return loss.sum() / t.shape[0]
