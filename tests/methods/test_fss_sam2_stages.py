"""FSSAM's stages on hand-built tensors: prototype priors, the memory refinement update, the
calibration bias and attention, the memory bank layout and the ungated decoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fss_sam2_testing import tiny_net

from refseg_bench.methods.fss_sam2 import scma
from refseg_bench.methods.fss_sam2.priors import (
    AREA_EPS,
    dino_priors,
    masked_average,
    minmax,
    prototype_prior,
)
from refseg_bench.methods.fss_sam2.refine import refine_memory, refine_step

A, B = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def _grid(vectors: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
    """(1, C, h, w) feature map from h*w vectors in raster order."""
    return torch.stack(vectors).T.reshape(1, -1, h, w)


# --- prototypes and priors ---------------------------------------------------------------
def test_masked_average_is_weighted_gap():
    feat = torch.arange(8.0).view(1, 2, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    expected = (feat * mask).sum((-2, -1)) / (1.5 + AREA_EPS)
    assert torch.allclose(masked_average(feat, mask).view(1, 2), expected, atol=1e-6)


def test_prototype_prior_scores_positions_by_cosine_to_the_masked_prototype():
    support = _grid([A, A, B, B], 2, 2)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # the prototype is A
    mix = (A + B) / math.sqrt(2)
    query = _grid([A, B, mix, 3 * A], 2, 2)
    prior = prototype_prior(query, support, mask, (2, 2)).flatten()
    # cosines 1, 0, 0.707, 1 -> min-max over the image
    assert torch.allclose(prior, torch.tensor([1.0, 0.0, math.sqrt(0.5), 1.0]), atol=1e-5)


def test_dino_priors_fg_and_ae_on_orthogonal_prototypes():
    support = _grid([A, A, B, B], 2, 2)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # FG prototype A, BG prototype B
    mix = (A + B) / math.sqrt(2)
    query = _grid([A, B, mix, mix], 2, 2)
    fg, ae = dino_priors(query, support[:, None], mask[:, None], (2, 2))
    assert fg.shape == ae.shape == (1, 1, 2, 2)
    assert torch.allclose(fg.flatten(), torch.tensor([1.0, 0.0, 0.7071, 0.7071]), atol=1e-4)
    # relu(fg - bg) = [1, 0, 0, 0] (the mixed positions are as close to FG as to BG)
    assert torch.allclose(ae.flatten(), torch.tensor([1.0, 0.0, 0.0, 0.0]), atol=1e-5)


def test_dino_priors_average_shots_and_upsample_with_aligned_corners():
    support = _grid([A, A, B, B], 2, 2)
    masks = torch.stack([torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]),
                         torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])])[None]  # 1, 2, 1, 2, 2
    query = _grid([A, B, A, B], 2, 2)
    fg, ae = dino_priors(query, torch.stack([support[0], support[0]])[None], masks, (3, 3))
    # shot 1 says A is foreground, shot 2 says B: their mean is flat at 0.5
    assert torch.allclose(fg, torch.full((1, 1, 3, 3), 0.5), atol=1e-5)
    single, _ = dino_priors(query, support[:, None], masks[:, :1], (3, 3))
    assert torch.allclose(single[0, 0, 0], torch.tensor([1.0, 0.5, 0.0]), atol=1e-5)


# --- iterative memory refinement -----------------------------------------------------------
def test_refine_step_blends_fg_memory_where_both_priors_agree():
    fg_mem = _grid([A, B], 1, 2)  # position 0 looks like the ae prototype, position 1 not
    ae_mem = _grid([A, A], 1, 2)
    prior_fg = torch.tensor([[[[0.9, 0.2]]]])
    prior_ae = torch.tensor([[[[1.0, 0.5]]]])
    support_prior = torch.tensor([[[[0.8, 1.0]]]])
    new_mem, new_prior = refine_step(fg_mem, ae_mem, prior_fg, prior_ae, support_prior)
    # q = [1, 0] (cosine to prototype A), w = relu(q + s - 1) = [0.8, 0]
    w = torch.tensor([0.8, 0.0])
    assert torch.allclose(new_mem[0, :, 0], fg_mem[0, :, 0] * w + ae_mem[0, :, 0] * (1 - w),
                          atol=1e-5)
    blended = torch.tensor([0.9 * 0.8 + 1.0 * 0.2, 0.5])
    assert torch.allclose(new_prior.flatten(), minmax(blended), atol=1e-5)


def test_refine_memory_repeats_the_step_with_a_fixed_support_prior():
    g = torch.Generator().manual_seed(0)
    sup, fg, ae = (torch.randn(1, 4, 3, 3, generator=g) for _ in range(3))
    sup_mask = (torch.rand(1, 1, 3, 3, generator=g) > 0.5).float()
    p_fg, p_ae = torch.rand(1, 1, 3, 3, generator=g), torch.rand(1, 1, 3, 3, generator=g)
    unchanged = refine_memory(sup, sup_mask, fg, ae, p_fg, p_ae, iterations=0)
    assert unchanged[0] is ae and unchanged[1] is p_ae
    s = prototype_prior(fg, sup, sup_mask, (3, 3))
    mem, prior = ae, p_ae
    for _ in range(3):
        mem, prior = refine_step(fg, mem, p_fg, prior, s)
    out = refine_memory(sup, sup_mask, fg, ae, p_fg, p_ae, iterations=3)
    assert torch.allclose(out[0], mem) and torch.allclose(out[1], prior)
    with pytest.raises(ValueError, match="version"):
        refine_step(fg, ae, p_fg, p_ae, s, version="v3")


# --- support-calibrated attention ------------------------------------------------------------
def test_calibration_bias_is_detached_clamped_and_scaled():
    logits = torch.tensor([[[0.0, 1.0, 2.0]]], requires_grad=True)
    cos = torch.tensor([[[1.0, 0.0, 0.5]]])
    bias = scma.calibration_bias(logits, cos)
    # minmax = [0, .5, 1]; + cos - 1 = [0, -.5, .5]; clamp <= 0; x 10
    assert torch.allclose(bias, torch.tensor([[[0.0, -5.0, 0.0]]]), atol=1e-5)
    assert not bias.requires_grad


def _manual_attention(q, k, v, n, cos):
    """softmax([sup, qry + bias, rest]) v with the support block already averaged."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    bias = ((minmax(logits[..., n:2 * n]) + cos - 1).clamp(max=0) * 10)
    logits = torch.cat([logits[..., :n], logits[..., n:2 * n] + bias, logits[..., 2 * n:]], -1)
    return torch.softmax(logits, -1) @ v


def test_calibrated_attention_averages_supports_and_biases_the_query_block():
    g = torch.Generator().manual_seed(1)
    n, d = 4, 3  # a 2 x 2 memory grid
    q = torch.randn(1, 1, n, d, generator=g)
    k = torch.randn(1, 1, 3 * n + 2, d, generator=g)  # 2 supports, query memory, 2 pointers
    v = torch.randn(1, 1, 3 * n + 2, d, generator=g)
    masks = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).expand(1, 2, 1, 2, 2)
    out = scma.calibrated_attention(q, k, v, masks)
    k_avg = torch.cat([(k[:, :, :n] + k[:, :, n:2 * n]) / 2, k[:, :, 2 * n:]], 2)
    v_avg = torch.cat([(v[:, :, :n] + v[:, :, n:2 * n]) / 2, v[:, :, 2 * n:]], 2)
    k_qry = k[0, 0, 2 * n:3 * n]
    coss = []
    for i in range(2):  # both masks cover the top row: prototype = mean of its two keys
        proto = k[0, 0, i * n:i * n + 2].sum(0) / (2 + 5e-4)
        coss.append(minmax(F.cosine_similarity(proto[None], k_qry, dim=-1, eps=0)))
    cos = torch.stack(coss).mean(0).view(1, 1, 1, n)
    assert torch.allclose(out, _manual_attention(q, k_avg, v_avg, n, cos), atol=1e-5)


def test_one_mask_over_two_supports_calibrates_the_second_support_block():
    """kshot_calibration=official: the block after the first support is support 2's."""
    g = torch.Generator().manual_seed(2)
    n, d = 4, 3
    q = torch.randn(1, 1, n, d, generator=g)
    k = torch.randn(1, 1, 3 * n + 2, d, generator=g)
    v = torch.randn(1, 1, 3 * n + 2, d, generator=g)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).expand(1, 1, 1, 2, 2)
    out = scma.calibrated_attention(q, k, v, mask)
    proto = k[0, 0, [0, 2]].sum(0) / (2 + 5e-4)
    cos = minmax(F.cosine_similarity(proto[None], k[0, 0, n:2 * n], dim=-1, eps=0))
    assert torch.allclose(out, _manual_attention(q, k, v, n, cos.view(1, 1, 1, n)), atol=1e-5)


def test_without_bias_the_layers_equal_stock_memory_attention(monkeypatch):
    """The plumbing around the scores (self-attention, RoPE, norms, MLP) is sam2's own: with
    the bias zeroed and one support, the result equals the stock module."""
    net = tiny_net(image_size=64)
    ma = net.sam2.memory_attention.eval()
    g = torch.Generator().manual_seed(3)
    n = 16  # 4 x 4 at 64 px
    curr, curr_pos = torch.randn(n, 2, 256, generator=g), torch.randn(n, 2, 256, generator=g)
    memory, pos = torch.randn(2 * n + 8, 2, 64, generator=g), torch.randn(2 * n + 8, 2, 64,
                                                                           generator=g)
    masks = (torch.rand(2, 1, 1, 4, 4, generator=g) > 0.5).float()
    with torch.no_grad():
        stock = ma(curr=curr, memory=memory, curr_pos=curr_pos, memory_pos=pos,
                   num_obj_ptr_tokens=8)
        calibrated = scma.calibrated_memory_attention(ma, curr, curr_pos, memory, pos, 8, masks)
        monkeypatch.setattr(scma, "calibration_bias", lambda logits, cos: torch.zeros_like(logits))
        unbiased = scma.calibrated_memory_attention(ma, curr, curr_pos, memory, pos, 8, masks)
    assert torch.allclose(unbiased, stock, atol=1e-5)
    assert (calibrated - stock).abs().max() > 1e-3  # the calibration does change the output


# --- memory bank and decoder -------------------------------------------------------------
def test_memory_tokens_layout():
    from refseg_bench.methods.fss_sam2.memory import Memory, memory_tokens

    net = tiny_net(image_size=64)
    sam2, b, k, n = net.sam2, 2, 3, 16
    sup = Memory(torch.randn(b * k, 64, 4, 4), torch.randn(b * k, 64, 4, 4),
                 torch.randn(b * k, 256))
    qry = Memory(torch.randn(b, 64, 4, 4), torch.randn(b, 64, 4, 4), torch.randn(b, 256))
    mem, pos, num_ptr = memory_tokens(sam2, sup, qry, b)
    assert num_ptr == 4 * (k + 1) and mem.shape == pos.shape == ((k + 1) * n + num_ptr, b, 64)
    tpos = sam2.maskmem_tpos_enc[sam2.num_maskmem - 1].view(64)
    assert torch.equal(mem[:n, 1], sup.feats[3].flatten(1).T)  # episode 1, support 0
    assert torch.allclose(pos[k * n:(k + 1) * n, 0], qry.pos[0].flatten(1).T + tpos)
    assert torch.equal(mem[(k + 1) * n:(k + 1) * n + 4, 1], sup.obj_ptr[3].view(4, 64))
    assert torch.equal(mem[-4:, 0], qry.obj_ptr[0].view(4, 64))
    assert not pos[-num_ptr:].any()


def test_ungated_decode_keeps_logits_where_stock_sam2_writes_no_object():
    from refseg_bench.methods.fss_sam2.decode import decode_ungated

    net = tiny_net(image_size=64)
    sam2 = net.sam2.eval()
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 256, 4, 4, generator=g)
    high = [torch.randn(2, 32, 16, 16, generator=g), torch.randn(2, 64, 8, 8, generator=g)]
    head = sam2.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.bias.fill_(-100.0)  # every object score <= 0
        stock = sam2._forward_sam_heads(feats, high_res_features=high, multimask_output=True)
        ours = decode_ungated(sam2, feats, high)
        assert (stock[4] == -1024).all() and ours.shape == (2, 1, 64, 64)
        sam2.pred_obj_scores = False  # stock without the gate: the same best-IoU mask
        ungated = sam2._forward_sam_heads(feats, high_res_features=high, multimask_output=True)
    assert torch.allclose(ours, ungated[4], atol=1e-6) and ours.abs().max() < 1024
