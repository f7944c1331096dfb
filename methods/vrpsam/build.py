"""Build the frozen SAM, the frozen backbone and a fresh VRP encoder from a ModelSpec."""

from __future__ import annotations

import torch

from refseg_bench.methods.vrpsam.encoder import BackboneChannels, VRPEncoder
from refseg_bench.methods.vrpsam.network import VRPSAMNet
from refseg_bench.methods.vrpsam.settings import ModelSpec


def backbone_channels(backbone: torch.nn.Module) -> BackboneChannels:
    """Channels of layer2 .. layer4: the width of each layer's last batch norm (or, without
    one, its last convolution), read from the modules without running them (a probe
    forward of ResNet-50 costs seconds on a busy CPU). Any width of ResNet v2 or VGG works
    without a table; ``tests/methods/test_vrpsam_encoder.py`` checks this against a
    forward pass."""
    channels = []
    for name in ("layer2", "layer3", "layer4"):
        widths = [m.num_features if isinstance(m, torch.nn.BatchNorm2d) else m.out_channels
                  for m in getattr(backbone, name).modules()
                  if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Conv2d))]
        if not widths:
            raise ValueError(f"backbone {name} has no convolution or batch norm to read "
                             "its width from")
        channels.append(widths[-1])
    return BackboneChannels(*channels)


def build_backbone(spec: ModelSpec, device: torch.device):
    """The frozen semantic backbone (``layer0`` .. ``layer4``) and its channel counts."""
    from refseg_bench.models.backbones import build_cnn_backbone

    backbone = build_cnn_backbone(spec.backbone, spec.backbone_checkpoint, device)
    return backbone, backbone_channels(backbone)


def build_net(spec: ModelSpec, device: torch.device) -> VRPSAMNet:
    """SAM, backbone and encoder on ``device``. Random weights (tiny configurations, the
    encoder's initial state) are drawn from a generator seeded by ``spec.init_seed`` in a
    forked RNG, so the same spec always gives the same networks and the global RNG is
    left untouched."""
    from refseg_bench.models.provenance import weights_info
    from refseg_bench.models.sam import build_sam

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.init_seed)
        sam = build_sam(spec.sam, spec.sam_checkpoint, device, image_size=spec.sam_image_size)
        backbone, channels = build_backbone(spec, device)
        encoder = VRPEncoder(backbone, channels, hidden_dim=sam.prompt_encoder.embed_dim,
                             num_queries=spec.num_queries)
    net = VRPSAMNet(encoder.to(device), sam, spec.image_size, prompt_scale=spec.prompt_scale,
                    logit_scale=spec.logit_scale)
    net.backbone_info = weights_info(backbone)
    return net
