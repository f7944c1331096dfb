"""Build SAM 2, DINOv2 and the FSSAM network from a :class:`~.settings.ModelSpec`."""

from __future__ import annotations

import torch

from refseg_bench.methods.fss_sam2.network import FSSAMModel, FSSAMNet, Stages
from refseg_bench.methods.fss_sam2.settings import ModelSpec


def build_model(spec: ModelSpec, device: torch.device) -> FSSAMModel:
    """SAM 2 (the video predictor of ``spec.sam2_version`` at ``spec.image_size``, with the
    post-processing options FSSAM's builder sets; RoPE grid = image size / 16) and DINOv2.
    Random weights are drawn in a forked RNG seeded by ``spec.init_seed``, so the same spec
    always gives the same networks and the global RNG is left untouched."""
    from refseg_bench.models.dinov2 import build_dinov2
    from refseg_bench.models.sam2_models import build_sam2

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.init_seed)
        sam2 = build_sam2(spec.sam2, spec.sam2_version, spec.sam2_checkpoint, spec.image_size,
                          device, video=True)
        dino = build_dinov2(spec.dino, spec.dino_checkpoint, device)
    return FSSAMModel(sam2, dino).to(device)


def build_net(spec: ModelSpec, device: torch.device, stages: Stages | None = None) -> FSSAMNet:
    return FSSAMNet(build_model(spec, device), spec.dino_size, stages or Stages())
