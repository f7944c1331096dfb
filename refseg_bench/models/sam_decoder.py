"""Steps of segment-anything's two-way decoder transformer, for adapters that re-run it
with a change (PerSAM's guidances, VRP-SAM's cached image side): the block's own modules,
the same operations in the same order as ``TwoWayAttentionBlock.forward``."""

from __future__ import annotations

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
