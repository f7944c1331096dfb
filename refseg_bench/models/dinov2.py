"""DINOv2 ViT-B/14 and ViT-L/14 in plain torch, with the official checkpoint key names
(``dinov2_vit{b,l}14_pretrain.pth``: ``cls_token``, ``pos_embed``, ``mask_token``,
``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}.*``, ``norm.*``), so the files load strictly without
torch.hub.

Architecture as facebookresearch/dinov2 (``models/vision_transformer.py``, hub defaults):
patch 14, pre-training size 518 (a 37 x 37 position grid plus the class token), pre-norm
blocks with LayerScale, LayerNorm eps 1e-6, GELU MLP of ratio 4, no register tokens.
Other input sizes interpolate the position grid bicubically with the official 0.1 offset
on the scale factor and no anti-aliasing (FSSAM feeds 560 x 560: a 40 x 40 grid).
Inputs: ImageNet-normalised RGB (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225 on 0..1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from refseg_bench.devices import resolve_device
from refseg_bench.models.checkpoints import load_checkpoint_into
from refseg_bench.models.provenance import WeightsInfo, attach_weights_info

PATCH = 14


@dataclass(frozen=True)
class VitSpec:
    embed_dim: int
    depth: int
    heads: int
    img_size: int = 518  # pre-training size: sets the stored position grid


DINOV2_SPECS = {
    "vitb14": VitSpec(768, 12, 12),
    "vitl14": VitSpec(1024, 24, 16),
    "tiny": VitSpec(32, 2, 2, img_size=56),  # tests only: a 4 x 4 position grid
}


ATTENTION_KINDS = ("sdpa", "explicit")


class Attention(nn.Module):
    """Multi-head self-attention. ``kind`` picks the arithmetic: ``sdpa`` (fused kernel) or
    ``explicit`` (``softmax((q * scale) @ k^T) @ v`` step by step: the official DINOv2 code
    without xFormers, bit for bit). Both compute the same function; their roundings differ."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.kind = "sdpa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.kind == "explicit":
            attn = ((q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B x (H/14 * W/14) x D


class DinoV2(nn.Module):
    """DINOv2 ViT. :meth:`forward_features` returns the official output dict;
    :meth:`patch_features` the B x D x H/14 x W/14 map that Matcher and FSSAM use."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        d, grid = spec.embed_dim, spec.img_size // PATCH
        self.embed_dim = d
        self.patch_embed = PatchEmbed(d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # pre-training only; kept for the keys
        self.blocks = nn.ModuleList(Block(d, spec.heads) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """1 x (1 + rows*cols) x D position embedding for a rows x cols patch grid."""
        n = self.pos_embed.shape[1] - 1
        m = int(math.sqrt(n))
        if rows == cols == m:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        # The official code asks for a scale factor of (size + 0.1) / m rather than a size
        # (an old floating-point work-around); the resampling weights depend on it.
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / m, (cols + 0.1) / m),
                             mode="bicubic", antialias=False)
        if grid.shape[-2:] != (rows, cols):
            raise RuntimeError(f"position grid resized to {tuple(grid.shape[-2:])}, "
                               f"expected {(rows, cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([pos[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W (H, W multiples of 14) -> B x (1 + HW/196) x D, before the blocks."""
        h, w = x.shape[-2:]
        if h % PATCH or w % PATCH:
            raise ValueError(f"input size {h}x{w} is not a multiple of the patch size {PATCH}")
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.position_embedding(h // PATCH, w // PATCH)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Official outputs: ``x_norm_clstoken`` B x D, ``x_norm_patchtokens`` B x N x D,
        ``x_prenorm`` B x (1+N) x D (last block, before the final norm; Matcher uses it)."""
        t = self.tokens(x)
        for block in self.blocks:
            t = block(t)
        normed = self.norm(t)
        return {"x_norm_clstoken": normed[:, 0], "x_norm_patchtokens": normed[:, 1:],
                "x_prenorm": t}

    def patch_features(self, x: torch.Tensor, *, norm: bool = True) -> torch.Tensor:
        """B x D x H/14 x W/14 patch features of the last block (after the final norm
        unless ``norm=False``)."""
        out = self.forward_features(x)
        tokens = out["x_norm_patchtokens"] if norm else out["x_prenorm"][:, 1:]
        b, (h, w) = x.shape[0], x.shape[-2:]
        return tokens.transpose(1, 2).reshape(b, self.embed_dim, h // PATCH, w // PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["x_norm_clstoken"]

    def set_attention(self, kind: str) -> DinoV2:
        """Use ``kind`` (``sdpa`` | ``explicit``, see :class:`Attention`) in every block."""
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}; got {kind!r}")
        for block in self.blocks:
            block.attn.kind = kind
        return self


def build_dinov2(variant: str, checkpoint: str | Path | None = None,
                 device: str | torch.device = "cpu") -> DinoV2:
    """``vitb14`` | ``vitl14`` | ``tiny``, frozen in eval mode. ``checkpoint``: a catalogue
    name (``"dinov2_vitb14"``, ``"dinov2_vitl14"``) or a path; None gives random weights."""
    if variant not in DINOV2_SPECS:
        raise ValueError(f"unknown DINOv2 variant {variant!r}; expected one of "
                         f"{sorted(DINOV2_SPECS)}")
    model = DinoV2(DINOV2_SPECS[variant])
    name = f"dinov2/{variant}"
    info = (WeightsInfo.random(name) if checkpoint is None
            else load_checkpoint_into(model, checkpoint, model=name))
    model = model.to(resolve_device(str(device))).eval().requires_grad_(False)
    attach_weights_info(model, info)
    return model
