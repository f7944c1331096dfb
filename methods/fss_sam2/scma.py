"""Support-calibrated memory attention (SCMA): FSSAM's attention math over the weights of
the stock ``sam2`` ``MemoryAttention`` (FSSAM: ``sam2/modeling/memory_attention.py`` with
``calibrate=True`` and ``RoPEAttention.forward`` in ``sam2/modeling/sam/transformer.py``).

The layers run as in ``sam2`` (self-attention, cross-attention to the memory bank, MLP);
only the cross-attention scores change. Memory layout (:func:`..memory.memory_tokens`):
``s`` support blocks of ``n = h*w`` tokens, the query-memory block, then the rest
(further frames and the object-pointer tokens, which get no RoPE). Per layer and head:

1. a foreground prototype of each support block's (projected, RoPE-rotated) keys under
   its mask (masked average pooling), its cosine to every query-memory key, min-max
   normalised; averaged over the ``s`` supports -> ``cos`` ``(1, n)``;
2. the ``s`` support blocks' keys and values averaged into one block;
3. logits ``q k^T / sqrt(d)``; the query-memory block's logits min-max normalised per row,
   plus ``cos - 1``, clamped to <= 0, times 10 and detached: a bias added to that block;
4. softmax over all tokens (dropout in training), times the values.

``s`` is the number of support masks given. FSSAM's 5-shot code passes only the first
support's mask, so ``s = 1`` while five support blocks precede the query memory: the
prototype comes from support 1, nothing is averaged, and the calibrated block is support
2's memory. Passing the first mask only reproduces that (``kshot_calibration=official``).
"""

from __future__ import annotations

import math

import torch

from refseg_bench.methods.fss_sam2.priors import EPS, masked_average, minmax

BIAS_SCALE = 10.0


def calibration_bias(block_logits: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The detached bias of the calibrated block: ``10 * min(minmax(logits) + cos - 1, 0)``.
    ``block_logits``: ``(..., Nq, n)``; ``cos``: ``(..., 1, n)`` in [0, 1]."""
    return ((minmax(block_logits) + (cos - 1.0)).clamp(max=0) * BIAS_SCALE).detach()


def support_cosine(k: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Step 1: ``k`` ``(B, heads, L, d)`` keys, ``masks`` ``(B, s, 1, h, w)``; the query
    memory is block ``s``. Returns ``(B, heads, 1, n)``."""
    b, heads, _, d = k.shape
    s, (h, w) = masks.shape[1], masks.shape[-2:]
    n = h * w
    k_qry = k[:, :, s * n:(s + 1) * n]
    q_norm = k_qry.norm(dim=-1, keepdim=True).transpose(-2, -1)  # B, heads, 1, n
    cos = []
    for i in range(s):
        k_sup = k[:, :, i * n:(i + 1) * n].transpose(-2, -1).reshape(b * heads, d, h, w)
        mask = masks[:, i, None].expand(b, heads, 1, h, w).reshape(b * heads, 1, h, w)
        proto = masked_average(k_sup, mask).view(b, heads, 1, d)
        c = (proto @ k_qry.transpose(-2, -1)) / (proto.norm(dim=-1, keepdim=True) @ q_norm + EPS)
        cos.append(minmax(c))
    return torch.stack(cos).mean(0)


def average_supports(x: torch.Tensor, s: int, n: int) -> torch.Tensor:
    """Step 2: the first ``s`` blocks of ``n`` tokens of ``x`` ``(B, heads, L, d)``
    replaced by their mean."""
    b, heads, _, d = x.shape
    return torch.cat([x[:, :, :s * n].reshape(b, heads, s, n, d).mean(2), x[:, :, s * n:]], 2)


def calibrated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         masks: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Steps 1-4 on projected, rotated ``(B, heads, L, d)`` tensors; returns
    ``(B, heads, Nq, d)``."""
    s, (h, w) = masks.shape[1], masks.shape[-2:]
    n = h * w
    cos = support_cosine(k, masks)
    k, v = average_supports(k, s, n), average_supports(v, s, n)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    bias = calibration_bias(logits[..., n:2 * n], cos)
    logits = torch.cat([logits[..., :n], logits[..., n:2 * n] + bias, logits[..., 2 * n:]], -1)
    weights = torch.softmax(logits, dim=-1)
    weights = torch.dropout(weights, dropout_p, train=True)
    return weights @ v


def _freqs(attn, n: int, device: torch.device) -> torch.Tensor:
    """The RoPE table for ``n`` query tokens (the module's own when its grid fits, without
    the stock forward's caching side effect)."""
    if attn.freqs_cis.shape[0] == n:
        return attn.freqs_cis.to(device)
    side = math.sqrt(n)
    return attn.compute_cis(end_x=side, end_y=side).to(device)


def calibrated_cross_attention(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               num_k_exclude_rope: int, masks: torch.Tensor) -> torch.Tensor:
    """A stock ``RoPEAttention``'s projections and rotary encoding, then
    :func:`calibrated_attention`. ``q``: ``(B, Nq, C)``; ``k``, ``v``: ``(B, L, C_kv)``
    batch-first; ``masks``: ``(B, s, 1, h, w)``. Returns ``(B, Nq, C)``."""
    from sam2.modeling.position_encoding import apply_rotary_enc

    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    num_rope = k.shape[-2] - num_k_exclude_rope
    q, k_rope = apply_rotary_enc(q, k[:, :, :num_rope], freqs_cis=_freqs(attn, q.shape[-2],
                                                                             q.device),
                                 repeat_freqs_k=attn.rope_k_repeat)
    k = torch.cat([k_rope, k[:, :, num_rope:]], dim=2)
    out = calibrated_attention(q, k, v, masks, attn.dropout_p if attn.training else 0.0)
    return attn.out_proj(attn._recombine_heads(out))


def _layer(layer, tgt, memory, pos, query_pos, num_ptr: int, masks) -> torch.Tensor:
    """One ``MemoryAttentionLayer`` with the calibrated cross-attention (batch-first)."""
    tgt = layer._forward_sa(tgt, query_pos)
    tgt2 = layer.norm2(tgt)
    q = tgt2 + query_pos if layer.pos_enc_at_cross_attn_queries else tgt2
    k = memory + pos if layer.pos_enc_at_cross_attn_keys else memory
    if num_ptr > 0:
        tgt2 = calibrated_cross_attention(layer.cross_attn_image, q, k, memory, num_ptr, masks)
    else:  # FSSAM calibrates only when object pointers are in the bank
        tgt2 = layer.cross_attn_image(q=q, k=k, v=memory)
    tgt = tgt + layer.dropout2(tgt2)
    tgt2 = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(tgt)))))
    return tgt + layer.dropout3(tgt2)


def calibrated_memory_attention(mem_attn, curr: torch.Tensor, curr_pos: torch.Tensor,
                                memory: torch.Tensor, memory_pos: torch.Tensor,
                                num_obj_ptr_tokens: int, masks: torch.Tensor) -> torch.Tensor:
    """``MemoryAttention.forward`` of stock ``sam2`` with every cross-attention calibrated.

    Seq-first like the stock module: ``curr``, ``curr_pos``: ``(h*w, B, 256)`` image
    features; ``memory``, ``memory_pos``: ``(L, B, 64)``; ``masks``: ``(B, s, 1, h, w)``
    support masks at the memory grid. Returns ``(h*w, B, 256)``.
    """
    if masks.shape[-2] * masks.shape[-1] != curr.shape[0]:
        raise ValueError(f"support masks {tuple(masks.shape[-2:])} do not match the "
                         f"{curr.shape[0]} image tokens")
    output = curr + 0.1 * curr_pos if mem_attn.pos_enc_at_input else curr
    if mem_attn.batch_first:
        output, curr_pos = output.transpose(0, 1), curr_pos.transpose(0, 1)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
    for layer in mem_attn.layers:
        output = _layer(layer, output, memory, memory_pos, curr_pos, num_obj_ptr_tokens, masks)
    output = mem_attn.norm(output)
    return output.transpose(0, 1) if mem_attn.batch_first else output

