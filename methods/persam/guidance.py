"""PerSAM's two decoder guidances, run on the weights of a stock segment-anything decoder.

The official code edits SAM's ``TwoWayTransformer`` (Personalize-SAM:
``per_segment_anything/modeling/transformer.py``); we leave the installed package alone and
re-run the same modules (their own projections, norms and MLPs) with two changes:

- **Target-guided attention.** In the token-to-image cross-attention of every two-way block
  (not the final attention), the post-softmax attention ``A`` becomes
  ``softmax(A + attn_sim)``: the guidance is added *after* the first softmax and a second
  softmax follows. ``attn_sim`` is ``(1, 1, 1, h*w)``, broadcast over batch, heads and tokens.
- **Target-semantic prompting.** The target embedding ``t`` (``(1, 1, C)``) is added to the
  tokens before each block and once more to the query of the final token-to-image attention.
  The official addition is in place on the tensor that is also the tokens' positional term,
  so from the first block on that positional term is ``tokens + t`` as well; the final query
  therefore carries ``queries + tokens + 2t``. We keep this exactly, for parity.

With both guidances ``None`` these functions compute what the stock decoder computes
(checked in the tests).
"""

from __future__ import annotations

import torch
from torch import Tensor

from refseg_bench.models.sam_decoder import attend, self_attention


def guided_attention(attn, q: Tensor, k: Tensor, v: Tensor, attn_sim: Tensor | None) -> Tensor:
    """``segment_anything`` ``Attention`` forward with the target-guided re-weighting.

    ``q``: (B, Nq, C), ``k``/``v``: (B, Nk, C); ``attn_sim``: broadcastable to
    (B, heads, Nq, Nk) or None. Returns (B, Nq, C).
    """
    # Post-softmax bias then a second softmax (not an additive pre-softmax mask).
    reweight = None if attn_sim is None else \
        (lambda weights: torch.softmax(weights + attn_sim, dim=-1))
    return attend(attn, attn.q_proj(q), attn.k_proj(k), attn.v_proj(v), reweight)


def guided_block(block, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
                 attn_sim: Tensor | None) -> tuple[Tensor, Tensor]:
    """One ``TwoWayAttentionBlock``; only the token-to-image attention is guided."""
    queries = self_attention(block, queries, query_pe)

    q, k = queries + query_pe, keys + key_pe
    queries = block.norm2(queries + guided_attention(block.cross_attn_token_to_image, q, k,
                                                     keys, attn_sim))
    queries = block.norm3(queries + block.mlp(queries))

    q, k = queries + query_pe, keys + key_pe
    keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def guided_transformer(transformer, image_embedding: Tensor, image_pe: Tensor, tokens: Tensor,
                       attn_sim: Tensor | None = None,
                       target_embedding: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``TwoWayTransformer`` forward with both guidances.

    ``image_embedding``/``image_pe``: (B, C, h, w); ``tokens``: (B, N, C);
    ``target_embedding``: (1, 1, C) or None. Returns tokens (B, N, C) and image keys
    (B, h*w, C).
    """
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    query_pe = tokens if target_embedding is None else tokens + target_embedding
    queries = tokens
    for layer in transformer.layers:
        if target_embedding is not None:
            queries = queries + target_embedding
        queries, keys = guided_block(layer, queries, keys, query_pe, key_pe, attn_sim)
    q = queries + query_pe
    if target_embedding is not None:
        q = q + target_embedding
    out = transformer.final_attn_token_to_image(q=q, k=keys + key_pe, v=keys)
    return transformer.norm_final_attn(queries + out), keys


def guided_decode(decoder, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
                  dense: Tensor, multimask_output: bool, attn_sim: Tensor | None = None,
                  target_embedding: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``MaskDecoder`` forward with the guidances passed to its transformer.

    ``image_embeddings``: (1, C, h, w); ``sparse``: (B, N, C) prompt tokens; ``dense``:
    (B, C, h, w). Returns low-resolution mask logits (B, M, 4h, 4w) and predicted IoUs
    (B, M), with M = 3 when ``multimask_output`` else 1.
    """
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse), dim=1)
    src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0) + dense
    pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
    b, c, h, w = src.shape

    hs, src = guided_transformer(decoder.transformer, src, pos_src, tokens, attn_sim,
                                 target_embedding)
    mask_tokens_out = hs[:, 1:(1 + decoder.num_mask_tokens), :]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                            for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    iou_pred = decoder.iou_prediction_head(hs[:, 0, :])

    keep = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, keep], iou_pred[:, keep]
