"""Runs the official FSSAM code on the CPU (github.com/Sam1224/FSSAM, tested at ``9318e28``).
Not a test module. Two users: ``test_fss_sam2_parity.py`` starts it as
``python fssam_official_runner.py WORKDIR`` (one forward) with the working directory set to
a patched copy of the official checkout, whose ``sam2`` package must shadow the installed
one; ``benchmarks/official_fss_sam2.py`` imports ``official_copy``, ``sam2_config_file``,
``patch_official`` and ``build_official`` to run the official evaluation loop on the same
stand-ins.

``official_copy`` copies the checkout without its large data, with one line changed:
``add_new_mask_batch`` (the function the forward calls) casts the memory features to
bfloat16, a no-op under the official bf16 autocast that breaks fp32 matmuls on the CPU
(mixed dtypes), so the cast is removed.

``WORKDIR/job.json`` names the shot, the SAM 2 config file (written into the copy's
``sam2_configs/``), the DINOv2 variant and shape and, optionally, a directory holding the
official ``dinov2`` package; ``WORKDIR/inputs.pt`` holds the images and support labels and
``WORKDIR/weights.pth`` the official-format checkpoint. The logits go to
``WORKDIR/official.pt``.

Stand-ins and patches, each because the official code cannot otherwise run here:
- ``torch.Tensor.cuda`` returns the tensor itself (the code calls ``.cuda()`` on the CPU);
- ``build_sam2_video_predictor`` builds on the CPU (its default device is ``cuda``);
- ``torch.hub.load`` returns a DINOv2 built here instead of downloading ViT-B/14 (the
  official ``dinov2`` code when a directory is given, else the harness's DinoV2 with the
  hub model's ``get_intermediate_layers``; tiny for the tests, ViT-B/14 itself with random
  weights for ``vs_official.py --size real``), and ``OneModel.num_layers`` is set to its
  depth;
- ``RoPEAttention.Weighted_GAP`` is the masked average pooling of ``model/FSSAM.py``
  (the release calls it but never defines it: upstream issue #3);
- ``timm`` (imported, never used on this path) is stubbed when absent.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from argparse import Namespace
from functools import partial
from pathlib import Path

import torch

BF16_CAST = "maskmem_features = maskmem_features.to(torch.bfloat16)"


def official_copy(src: Path, dest: Path) -> Path:
    """The checkout ``src`` copied to ``dest`` without its large data, with the bf16 cast
    of ``add_new_mask_batch`` removed."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", "lists", "*.so", "exp"))
    predictor = dest / "sam2" / "sam2_video_predictor.py"
    text = predictor.read_text()
    start = text.index("def add_new_mask_batch(")
    end = text.index("\n    def ", start)
    body = text[start:end]
    if body.count(BF16_CAST) != 1:
        raise RuntimeError(f"{predictor}: the official add_new_mask_batch changed (expected "
                           f"one `{BF16_CAST}`)")
    body = body.replace(BF16_CAST, "pass  # fp32 on the CPU")
    predictor.write_text(text[:start] + body + text[end:])
    return dest


def sam2_config_file(dest: Path, image_size: int, variant: str = "tiny") -> str:
    """Our SAM 2.0 config of ``variant`` (``tiny``, or FSSAM's ``hiera_s``), written where
    the copy's Hydra search path finds it; returns its file name."""
    from omegaconf import OmegaConf

    from refseg_bench.models.sam2_models import sam2_config

    cfg = sam2_config(variant, "2.0", image_size, video=False, postprocessing=False)
    cfg.model._target_ = "sam2.modeling.sam2_base.SAM2Base"  # as the official YAML files
    name = f"parity_{variant}_{image_size}.yaml"
    (dest / "sam2_configs" / name).write_text("# @package _global_\n" + OmegaConf.to_yaml(cfg))
    return name


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
    """The job's DINOv2 as the official ``dinov2`` package builds a hub model."""
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

    model = DinoV2(DINOV2_SPECS[job.get("dino", "tiny")])

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


def official_job(root: Path, shot: int, image_size: int, dinov2_dir: str | None = None,
                 *, sam2: str = "tiny", dino: str = "tiny") -> dict:
    """What ``patch_official`` and ``build_official`` read: the shot, the SAM 2 config of
    variant ``sam2`` (written into the copy ``root``), the DINOv2 variant ``dino`` with its
    shape and where to build it from (the official ``dinov2`` package in ``dinov2_dir``,
    else the harness's)."""
    from refseg_bench.models.dinov2 import DINOV2_SPECS

    spec = DINOV2_SPECS[dino]
    return {"shot": shot, "sam2_config": sam2_config_file(root, image_size, sam2),
            "dino": dino, "dino_depth": spec.depth, "dino_dim": spec.embed_dim,
            "dino_heads": spec.heads, "dino_img_size": spec.img_size, "dinov2_dir": dinov2_dir,
            "harness_root": str(Path(__file__).resolve().parents[2])}


def shared_weights(seed: int = 0, image_size: int = 512, dino_size: int = 560, *,
                   sam2: str = "tiny", dino: str = "tiny"):
    """An FSSAMModel (SAM 2.0 ``sam2``, DINOv2 ``dino``: tiny by default) with every
    parameter perturbed, so that no tensor keeps an initialiser's zeros or ones (all stages
    then carry signal)."""
    from refseg_bench.methods.fss_sam2.build import build_model
    from refseg_bench.methods.fss_sam2.settings import ModelSpec

    spec = ModelSpec(sam2=sam2, sam2_checkpoint=None, image_size=image_size, dino=dino,
                     dino_checkpoint=None, dino_size=dino_size, init_seed=seed)
    model = build_model(spec, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model.eval()


def patch_official(job: dict) -> None:
    """The stand-ins listed above, before the official modules are imported (the copy must
    be first on ``sys.path``)."""
    _stub_timm()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    dino = _official_dino(job) if job.get("dinov2_dir") else _harness_dino(job)
    torch.hub.load = lambda *args, **kwargs: dino

    import sam2.build_sam as build_sam

    build = build_sam.build_sam2_video_predictor
    build_sam.build_sam2_video_predictor = lambda *a, **k: build(*a, **{**k, "device": "cpu"})
    from model import FSSAM
    from sam2.modeling.sam.transformer import RoPEAttention

    RoPEAttention.Weighted_GAP = staticmethod(FSSAM.Weighted_GAP)


def build_official(job: dict, weights: Path) -> torch.nn.Module:
    """``OneModel`` of ``model/FSSAM.py`` (``FSSAM5s.py`` for more than one shot) with the
    official arguments, loaded strictly from ``weights`` (official format), in eval mode."""
    from model import FSSAM, FSSAM5s

    module = FSSAM5s if job["shot"] > 1 else FSSAM
    args = Namespace(zoom_factor=8, shot=job["shot"], data_set="pascal", print_freq=10,
                     sam2_weight=None, sam2_config=job["sam2_config"],
                     ver_dino="dinov2_vitb14", num_refine=3, ver_refine="v1")
    model = module.OneModel(args)
    model.num_layers = job["dino_depth"]
    state = torch.load(weights, map_location="cpu", weights_only=True)
    sd = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def main(workdir: Path) -> None:
    job = json.loads((workdir / "job.json").read_text())
    patch_official(job)
    model = build_official(job, workdir / "weights.pth")
    inputs = torch.load(workdir / "inputs.pt", weights_only=True)
    with torch.no_grad():
        out, _ = model(x=inputs["query"], s_x=inputs["supports"], s_y=inputs["labels"],
                       y_m=None)
    torch.save(out.float(), workdir / "official.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
