"""Steps of segment-anything's two-way decoder transformer, for adapters that re-run it
with a change (PerSAM's guidances, VRP-SAM's cached image side): the block's own modules,
the same operations in the same order as ``TwoWayAttentionBlock.forward``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def self_attention(block, queries: Tensor, query_pe: Tensor) -> Tensor:
    """A two-way block's first step on the tokens ``queries`` ``(B, N, C)``: self-attention
    (with ``query_pe`` added, unless the block skips it, as the first block does) and
    ``norm1``."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    return block.norm1(queries)


def attend(attn, q: Tensor, k: Tensor, v: Tensor,
           reweight: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """segment-anything ``Attention.forward`` after its input projections: ``q``, ``k``,
    ``v`` already projected ``(B, N, C')``; ``reweight`` (optional) maps the post-softmax
    weights ``(B, heads, Nq, Nk)`` before they are applied. Returns ``(B, Nq, C)``."""
    q, k, v = (attn._separate_heads(x, attn.num_heads) for x in (q, k, v))
    weights = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
    if reweight is not None:
        weights = reweight(weights)
    return attn.out_proj(attn._recombine_heads(weights @ v))
