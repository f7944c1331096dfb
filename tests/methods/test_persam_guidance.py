"""Target-guided attention and target-semantic prompting against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
from persam_testing import tiny_sam

from refseg_bench.methods.persam.guidance import (
    guided_attention,
    guided_block,
    guided_decode,
    guided_transformer,
)


@pytest.fixture(scope="module")
def sam():
    return tiny_sam()


def _inputs(sam, n_tokens=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = sam.prompt_encoder.embed_dim
    h, w = sam.prompt_encoder.image_embedding_size
    image = torch.randn(1, c, h, w, generator=g)
    tokens = torch.randn(1, n_tokens, c, generator=g)
    attn_sim = torch.rand(1, 1, 1, h * w, generator=g) * 3
    target = torch.randn(1, 1, c, generator=g)
    return image, sam.prompt_encoder.get_dense_pe(), tokens, attn_sim, target


def direct_guided_attention(attn, q, k, v, attn_sim):
    """softmax(softmax(Q K^T / sqrt(d)) + S) V per head, written with einsum."""
    heads = attn.num_heads
    def split(x):
        b, n, c = x.shape
        return x.reshape(b, n, heads, c // heads)
    qh, kh, vh = split(attn.q_proj(q)), split(attn.k_proj(k)), split(attn.v_proj(v))
    logits = torch.einsum("bqhd,bkhd->bhqk", qh, kh) / math.sqrt(qh.shape[-1])
    a = torch.softmax(logits, -1)
    if attn_sim is not None:
        a = torch.softmax(a + attn_sim, -1)
    out = torch.einsum("bhqk,bkhd->bqhd", a, vh)
    return attn.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


@torch.no_grad()
def test_guided_attention_is_post_softmax_bias_then_softmax(sam):
    image, _, tokens, attn_sim, _ = _inputs(sam)
    attn = sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    keys = image.flatten(2).permute(0, 2, 1)
    ours = guided_attention(attn, tokens, keys, keys, attn_sim)
    torch.testing.assert_close(ours, direct_guided_attention(attn, tokens, keys, keys, attn_sim))
    # and it really changes the attention output
    plain = attn(q=tokens, k=keys, v=keys)
    assert (ours - plain).abs().max() > 1e-3
    torch.testing.assert_close(guided_attention(attn, tokens, keys, keys, None), plain)


@torch.no_grad()
def test_only_token_to_image_attention_of_blocks_is_guided(sam, monkeypatch):
    """Stock transformer with each block's token->image attention replaced by the direct
    guided formula == guided_transformer: the final attention and the image->token
    attention are untouched."""
    image, pe, tokens, attn_sim, _ = _inputs(sam)
    tr = sam.mask_decoder.transformer
    for layer in tr.layers:
        attn = layer.cross_attn_token_to_image
        monkeypatch.setattr(attn, "forward", lambda q, k, v, a=attn:
                            direct_guided_attention(a, q, k, v, attn_sim))
    ref_q, ref_k = tr(image, pe, tokens)
    monkeypatch.undo()
    q, k = guided_transformer(tr, image, pe, tokens, attn_sim=attn_sim)
    torch.testing.assert_close(q, ref_q)
    torch.testing.assert_close(k, ref_k)


def official_semantic_prompting(tr, image, pe, point_embedding, target):
    """The official order of additions, with its in-place update of the tensor that is
    also the positional term of the tokens, run through the stock blocks."""
    keys = image.flatten(2).permute(0, 2, 1)
    image_pe = pe.flatten(2).permute(0, 2, 1)
    point_embedding = point_embedding.clone()
    queries = point_embedding
    for layer in tr.layers:
        queries += target  # in place: the first time, point_embedding changes too
        queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding,
                              key_pe=image_pe)
    q = queries + point_embedding
    q += target
    out = tr.final_attn_token_to_image(q=q, k=keys + image_pe, v=keys)
    return tr.norm_final_attn(queries + out), keys


@torch.no_grad()
def test_semantic_prompting_adds_target_as_official(sam):
    image, pe, tokens, _, target = _inputs(sam)
    tr = sam.mask_decoder.transformer
    ref_q, ref_k = official_semantic_prompting(tr, image, pe, tokens, target)
    q, k = guided_transformer(tr, image, pe, tokens, target_embedding=target)
    torch.testing.assert_close(q, ref_q)
    torch.testing.assert_close(k, ref_k)
    plain_q, _ = tr(image, pe, tokens)
    assert (q - plain_q).abs().max() > 1e-3


@torch.no_grad()
def test_final_query_carries_tokens_plus_twice_the_target(sam, monkeypatch):
    """The exact term added to the final attention query: queries + tokens + 2 t."""
    image, pe, tokens, _, target = _inputs(sam)
    tr = sam.mask_decoder.transformer
    final, seen = tr.final_attn_token_to_image, {}
    stock_forward = final.forward

    def record(q, k, v):
        seen["q"] = q
        return stock_forward(q=q, k=k, v=v)

    monkeypatch.setattr(final, "forward", record)
    guided_transformer(tr, image, pe, tokens, target_embedding=target)
    monkeypatch.undo()
    # the block outputs recomputed: the queries that enter the final attention
    keys = image.flatten(2).permute(0, 2, 1)
    key_pe = pe.flatten(2).permute(0, 2, 1)
    queries = tokens
    for layer in tr.layers:
        queries, keys = guided_block(layer, queries + target, keys, tokens + target, key_pe,
                                     None)
    torch.testing.assert_close(seen["q"], queries + tokens + 2 * target)


@torch.no_grad()
@pytest.mark.parametrize("multimask", [True, False])
def test_unguided_decode_equals_stock_decoder(sam, multimask):
    image, pe, _, _, _ = _inputs(sam)
    pts = (torch.tensor([[[40.0, 60.0], [200.0, 10.0]]]), torch.tensor([[1, 0]]))
    sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
    ref_masks, ref_iou = sam.mask_decoder(image, pe, sparse, dense, multimask)
    masks, iou = guided_decode(sam.mask_decoder, image, pe, sparse, dense, multimask)
    assert masks.shape == ref_masks.shape == (1, 3 if multimask else 1, 64, 64)
    torch.testing.assert_close(masks, ref_masks, rtol=0, atol=0)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=0)
