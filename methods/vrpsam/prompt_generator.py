"""The VRP-SAM prompt generator: 50 learnable queries attend to support, then query features.

Attribute names follow the official checkpoint (``transformer_decoder.*`` in VRP-SAM's
``model/base/transformer_decoder.py``) so its state dicts load strictly:

- ``transformer_cross_attention_layers_0`` / ``transformer_self_attention_layers_0``:
  the support round; ``transformer_cross_attention_layers`` /
  ``transformer_self_attention_layers``: the query round. Each is a one-element
  ``ModuleList`` of post-norm attention blocks (``multihead_attn`` or ``self_attn``, then
  ``norm``), dropout 0 and no feed-forward block.
- ``supp_q_feat``: the ``(num_queries, dim)`` embedding of the learnable queries.
- Order: cross-attention to support tokens, self-attention, cross-attention to query tokens,
  self-attention. A normalised sine position encoding is added to the keys of the
  cross-attentions only (never to the queries or values).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_encoding(height: int, width: int, dim: int, device: torch.device,
                           temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2-D sine encoding of a ``height x width`` grid.

    Returns ``(height * width, dim)`` float32 in row-major order: the first ``dim / 2``
    channels encode the row (y), the rest the column (x); each half interleaves sine and
    cosine of the position scaled to ``(0, 2 pi]`` over frequencies ``temperature^(2i/half)``.
    """
    if dim % 4:
        raise ValueError(f"sine position encoding needs dim divisible by 4, got {dim}")
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    ys = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    xs = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    ys = ys / (ys[-1] + eps) * scale
    xs = xs / (xs[-1] + eps) * scale
    idx = torch.arange(half, dtype=torch.float32, device=device)
    freq = temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half), sin/cos interleaved
        angles = pos[:, None] / freq
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(height, width, half)
    pos_x = encode(xs)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim)


def _xavier_matrices(module: nn.Module) -> None:
    # The official layers re-initialise every matrix (in_proj, out_proj) with Xavier-uniform.
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class CrossAttentionBlock(nn.Module):
    """Post-norm cross-attention: ``norm(q + attn(q, k + pos, k))``. Tensors ``(B, N, C)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor
                ) -> torch.Tensor:
        out = self.multihead_attn(queries, memory + pos, memory, need_weights=False)[0]
        return self.norm(queries + out)


class SelfAttentionBlock(nn.Module):
    """Post-norm self-attention without position encoding. Tensors ``(B, N, C)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        _xavier_matrices(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.self_attn(tokens, tokens, tokens, need_weights=False)[0]
        return self.norm(tokens + out)


class PromptGenerator(nn.Module):
    """Turns merged query and support feature maps into ``num_queries`` prompt tokens."""

    def __init__(self, dim: int = 256, num_queries: int = 50, heads: int = 4) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.transformer_cross_attention_layers_0 = nn.ModuleList([CrossAttentionBlock(dim, heads)])
        self.transformer_self_attention_layers_0 = nn.ModuleList([SelfAttentionBlock(dim, heads)])
        self.transformer_cross_attention_layers = nn.ModuleList([CrossAttentionBlock(dim, heads)])
        self.transformer_self_attention_layers = nn.ModuleList([SelfAttentionBlock(dim, heads)])
        self.supp_q_feat = nn.Embedding(num_queries, dim)

    def forward(self, query_feat: torch.Tensor, support_feat: torch.Tensor) -> torch.Tensor:
        """``query_feat``, ``support_feat``: ``(B, C, H, W)`` float. Returns ``(B, Q, C)``."""
        return self.attend_query(self.attend_support(support_feat), query_feat)

    def attend_support(self, support_feat: torch.Tensor) -> torch.Tensor:
        """The first half, which sees the support only: the learned queries after the
        support cross-attention and a self-attention, ``(B, Q, C)`` (cacheable per support
        under fixed weights)."""
        b, c, h, w = support_feat.shape
        s_tokens = support_feat.flatten(2).transpose(1, 2)  # (B, HW, C)
        s_pos = sine_position_encoding(h, w, c, support_feat.device).to(support_feat.dtype)
        out = self.supp_q_feat.weight.unsqueeze(0).expand(b, -1, -1)
        out = self.transformer_cross_attention_layers_0[0](out, s_tokens, s_pos)
        return self.transformer_self_attention_layers_0[0](out)

    def attend_query(self, tokens: torch.Tensor, query_feat: torch.Tensor) -> torch.Tensor:
        """The second half: ``tokens`` from :meth:`attend_support` attend to ``query_feat``
        ``(B, C, H, W)``, then to each other. Returns ``(B, Q, C)``."""
        _, c, h, w = query_feat.shape
        q_tokens = query_feat.flatten(2).transpose(1, 2)
        q_pos = sine_position_encoding(h, w, c, query_feat.device).to(query_feat.dtype)
        out = self.transformer_cross_attention_layers[0](tokens, q_tokens, q_pos)
        return self.transformer_self_attention_layers[0](out)
