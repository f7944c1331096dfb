"""Runs the official FSSAM forward on the CPU in its own process (the parity test's other
side). Not a test module: ``test_fss_sam2_parity.py`` starts it as
``python fssam_official_runner.py WORKDIR`` with the working directory set to a patched copy
of the official checkout, whose ``sam2`` package must shadow the installed one.

``WORKDIR/job.json`` names the shot, the SAM 2 config file (written into the copy's
``sam2_configs/``), the DINOv2 depth and, optionally, a directory holding the official
``dinov2`` package; ``WORKDIR/inputs.pt`` holds the images and support labels and
``WORKDIR/weights.pth`` the official-format checkpoint. The logits go to
``WORKDIR/official.pt``.

Stand-ins and patches, each because the official code cannot otherwise run here:
- ``torch.Tensor.cuda`` returns the tensor itself (the code calls ``.cuda()`` on the CPU);
- ``build_sam2_video_predictor`` builds on the CPU (its default device is ``cuda``);
- ``torch.hub.load`` returns a tiny DINOv2 instead of downloading ViT-B/14 (the official
  ``dinov2`` code when a directory is given, else the harness's DinoV2 with the hub model's
  ``get_intermediate_layers``), and ``OneModel.num_layers`` is set to its depth;
- ``RoPEAttention.Weighted_GAP`` is the masked average pooling of ``model/FSSAM.py``
  (the release calls it but never defines it: upstream issue #3);
- ``timm`` (imported, never used on this path) is stubbed when absent.
"""

from __future__ import annotations

import json
import sys
import types
from argparse import Namespace
from functools import partial
from pathlib import Path

import torch


def _stub_timm() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        layers = types.ModuleType("timm.models.layers")
        layers.trunc_normal_ = torch.nn.init.trunc_normal_
        sys.modules.update({"timm": types.ModuleType("timm"),
                            "timm.models": types.ModuleType("timm.models"),
                            "timm.models.layers": layers})


def _official_dino(job: dict):
    """The tiny DINOv2 as the official ``dinov2`` package builds a hub model."""
    sys.path.insert(1, job["dinov2_dir"])
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    return DinoVisionTransformer(
        img_size=job["dino_img_size"], patch_size=14, embed_dim=job["dino_dim"],
        depth=job["dino_depth"], num_heads=job["dino_heads"], mlp_ratio=4, init_values=1.0,
        block_fn=partial(Block, attn_class=MemEffAttention), block_chunks=0)


def _harness_dino(job: dict):
    """The harness's DinoV2 with the hub model's ``get_intermediate_layers`` (normed
    outputs of the requested blocks, patch tokens reshaped to B x D x h x w)."""
    sys.path.insert(1, job["harness_root"])
    from refseg_bench.models.dinov2 import DINOV2_SPECS, DinoV2

    model = DinoV2(DINOV2_SPECS["tiny"])

    def get_intermediate_layers(x, n, reshape=False, norm=True):
        t, outs = model.tokens(x), []
        for i, block in enumerate(model.blocks):
            t = block(t)
            if i in n:
                outs.append(model.norm(t) if norm else t)
        b, _, h, w = x.shape
        return tuple(o[:, 1:].transpose(1, 2).reshape(b, -1, h // 14, w // 14) for o in outs)

    model.get_intermediate_layers = get_intermediate_layers
    return model


def main(workdir: Path) -> None:
    job = json.loads((workdir / "job.json").read_text())
    _stub_timm()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    dino = _official_dino(job) if job.get("dinov2_dir") else _harness_dino(job)
    torch.hub.load = lambda *args, **kwargs: dino

    import sam2.build_sam as build_sam

    build = build_sam.build_sam2_video_predictor
    build_sam.build_sam2_video_predictor = lambda *a, **k: build(*a, **{**k, "device": "cpu"})
    from model import FSSAM, FSSAM5s
    from sam2.modeling.sam.transformer import RoPEAttention

    RoPEAttention.Weighted_GAP = staticmethod(FSSAM.Weighted_GAP)
    module = FSSAM5s if job["shot"] > 1 else FSSAM
    args = Namespace(zoom_factor=8, shot=job["shot"], data_set="pascal", print_freq=10,
                     sam2_weight=None, sam2_config=job["sam2_config"],
                     ver_dino="dinov2_vitb14", num_refine=3, ver_refine="v1")
    model = module.OneModel(args)
    model.num_layers = job["dino_depth"]
    state = torch.load(workdir / "weights.pth", map_location="cpu", weights_only=True)
    sd = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    inputs = torch.load(workdir / "inputs.pt", weights_only=True)
    with torch.no_grad():
        out, _ = model(x=inputs["query"], s_x=inputs["supports"], s_y=inputs["labels"],
                       y_m=None)
    torch.save(out.float(), workdir / "official.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
