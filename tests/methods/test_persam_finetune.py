"""PerSAM-F's mask weights: they sum to 1, training lowers the loss, losses as specified."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refseg_bench.methods.persam.cascade import weighted_logits
from refseg_bench.methods.persam.finetune import (
    MaskWeights,
    dice_loss,
    fit_mask_weights,
    focal_loss,
)


def test_third_weight_is_one_minus_the_two_learnable_ones():
    mw = MaskWeights()
    torch.testing.assert_close(mw.full().flatten(), torch.full((3,), 1 / 3))
    with torch.no_grad():
        mw.weights.copy_(torch.tensor([[0.7], [-0.2]]))
    full = mw.full().flatten()
    torch.testing.assert_close(full, torch.tensor([0.5, 0.7, -0.2]))
    assert torch.isclose(full.sum(), torch.tensor(1.0))
    assert sum(p.numel() for p in mw.parameters() if p.requires_grad) == 2


def _problem(seed=0, pixels=400):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(1, pixels, generator=g) > 0.6).float()
    # mask 2 agrees with the target, masks 0 and 1 are noise: weight should move to mask 2
    good = (target * 2 - 1) * 4 + torch.randn(1, pixels, generator=g)
    logits = torch.cat([torch.randn(2, pixels, generator=g) * 3, good])
    return logits, target


def test_fitting_lowers_the_loss_and_keeps_the_sum():
    logits, target = _problem()
    fit = fit_mask_weights([logits], [target], iterations=200)
    assert len(fit.losses) == 200
    assert fit.losses[-1] < 0.8 * fit.losses[0]
    assert torch.isclose(fit.weights.sum(), torch.tensor(1.0), atol=1e-6)
    assert fit.weights[2] > fit.weights[0] and fit.weights[2] > fit.weights[1]
    fused = weighted_logits(logits, fit.weights)[None]
    assert dice_loss(fused, target) + focal_loss(fused, target) < fit.losses[0]


def test_k_references_average_their_losses():
    a, ta = _problem(1, 300)
    b, tb = _problem(2, 500)
    two = fit_mask_weights([a, b], [ta, tb], iterations=1)
    w0 = torch.full((3, 1), 1 / 3)
    expected = 0.5 * sum(dice_loss((lg * w0).sum(0, keepdim=True), t)
                         + focal_loss((lg * w0).sum(0, keepdim=True), t)
                         for lg, t in ((a, ta), (b, tb)))
    assert abs(two.losses[0] - float(expected)) < 1e-6


def test_losses_match_their_definitions():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    p = logits.sigmoid()
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    torch.testing.assert_close(dice_loss(logits, target), dice)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.where(target > 0, p, 1 - p)
    alpha = torch.where(target > 0, 0.25, 0.75)
    torch.testing.assert_close(focal_loss(logits, target), (alpha * ce * (1 - p_t) ** 2).mean())
