"""The two frozen models Matcher runs on: SAM and DINOv2 (``refseg_bench.models``)."""

from __future__ import annotations

import torch

from refseg_bench.methods.matcher.settings import ModelSpec


def calibrate_random_sam(sam, logit_scale: float, iou_offset: float) -> None:
    """Turn a random SAM into a stand-in whose proposals pass Matcher's filters, as a
    change of weights (so any code loading the state dict sees the same model): the last
    layer of every mask hypernetwork is scaled by ``logit_scale`` (mask logits scale with
    it) and ``iou_offset`` is added to the IoU head's last bias."""
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(logit_scale)
            mlp.layers[-1].bias.mul_(logit_scale)
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.add_(iou_offset)


def build_models(spec: ModelSpec, device: torch.device, attention: str):
    """(SAM, DINOv2) of ``spec`` in eval mode on ``device``, frozen. Random weights are
    drawn from torch's generator seeded with ``spec.init_seed`` inside a forked RNG state
    (reproducible, the caller's RNG untouched)."""
    from refseg_bench.models.dinov2 import build_dinov2
    from refseg_bench.models.sam import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.init_seed)
        sam = build_sam(spec.sam, spec.sam_checkpoint, device, image_size=spec.sam_image_size)
        dinov2 = build_dinov2(spec.dinov2, spec.dinov2_checkpoint, device)
    if spec.sam_checkpoint is None and (spec.sam_logit_scale, spec.sam_iou_offset) != (1, 0):
        calibrate_random_sam(sam, spec.sam_logit_scale, spec.sam_iou_offset)
    for p in sam.parameters():
        p.requires_grad_(False)
    dinov2.set_attention(attention)
    return sam, dinov2
