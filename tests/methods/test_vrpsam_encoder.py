"""The VRP encoder: official parameter counts, official state-dict keys, strict loading."""

from __future__ import annotations

import math

import pytest
import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam.build import backbone_channels
from refseg_bench.methods.vrpsam.encoder import (
    BACKBONE_LAYERS,
    VRPEncoder,
    location_norms,
    masked_average,
    pseudo_mask,
)
from refseg_bench.methods.vrpsam.prompt_generator import sine_position_encoding
from refseg_bench.models.backbones import build_cnn_backbone
from refseg_bench.models.checkpoints import load_strict

# VRP-SAM's training log (logs/trn1_coco_mask_fold0.log), counted over state-dict entries
# by Logger.log_params: "Backbone # param.: 23685367", "Learnable # param.: 1592064".
OFFICIAL_BACKBONE_ENTRIES = 23_685_367
OFFICIAL_LEARNABLE = 1_592_064


def _official_learnable_keys(d: int = 256, queries: int = 50, mid: int = 1536) -> dict:
    """The non-backbone keys of an official checkpoint and their shapes, written out from
    the official module definitions (VRP_encoder.py, transformer_decoder.py)."""
    keys = {"downsample_query.0.weight": (d, mid, 1, 1),
            "merge_1.0.weight": (d, 2 * d + 1, 1, 1),
            "transformer_decoder.supp_q_feat.weight": (queries, d)}
    for group, attn in (("transformer_cross_attention_layers_0", "multihead_attn"),
                        ("transformer_self_attention_layers_0", "self_attn"),
                        ("transformer_cross_attention_layers", "multihead_attn"),
                        ("transformer_self_attention_layers", "self_attn")):
        p = f"transformer_decoder.{group}.0"
        keys |= {f"{p}.{attn}.in_proj_weight": (3 * d, d), f"{p}.{attn}.in_proj_bias": (3 * d,),
                 f"{p}.{attn}.out_proj.weight": (d, d), f"{p}.{attn}.out_proj.bias": (d,),
                 f"{p}.norm.weight": (d,), f"{p}.norm.bias": (d,)}
    return keys


@pytest.fixture(scope="module")
def real_encoder() -> VRPEncoder:
    backbone = build_cnn_backbone("resnet50_v2")  # random weights: only shapes matter here
    return VRPEncoder(backbone, backbone_channels(backbone))


def _is_backbone(key: str) -> bool:
    return key.split(".")[0] in BACKBONE_LAYERS


def test_real_size_parameter_counts_match_the_official_log(real_encoder):
    trainable = sum(p.numel() for p in real_encoder.parameters() if p.requires_grad)
    assert trainable == OFFICIAL_LEARNABLE
    assert sum(p.numel() for p in real_encoder.learnable_parameters()) == OFFICIAL_LEARNABLE
    sd = real_encoder.state_dict()
    assert sum(v.numel() for k, v in sd.items() if _is_backbone(k)) == OFFICIAL_BACKBONE_ENTRIES
    assert sum(v.numel() for k, v in sd.items() if not _is_backbone(k)) == OFFICIAL_LEARNABLE


def test_learnable_keys_and_shapes_are_the_official_ones(real_encoder):
    ours = {k: tuple(v.shape) for k, v in real_encoder.state_dict().items() if not _is_backbone(k)}
    assert ours == _official_learnable_keys()
    assert "layer0.0.weight" in real_encoder.state_dict()  # deep stem conv1, official name


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_official_format_state_dict_loads_strictly(real_encoder, prefix):
    gen = torch.Generator().manual_seed(0)
    official = {prefix + k: torch.randn(v.shape, generator=gen).to(v.dtype)
                for k, v in real_encoder.state_dict().items()}
    load_strict(real_encoder, official)  # overwrites values only; other tests count shapes
    for k, v in real_encoder.state_dict().items():
        assert torch.equal(v, official[prefix + k]), k


def test_file_round_trip_and_key_mismatch_is_named(tmp_path):
    backbone = build_cnn_backbone("resnet_v2_tiny")
    enc = VRPEncoder(backbone, backbone_channels(backbone), hidden_dim=64)
    path = tmp_path / "vrp.pt"
    store.save_encoder(enc, path)
    saved = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in saved)
    other = VRPEncoder(build_cnn_backbone("resnet_v2_tiny"), backbone_channels(backbone),
                       hidden_dim=64)
    assert len(store.load_encoder(other, path)) == 64
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(),
                                                 other.state_dict().values(), strict=True))
    del saved["module.merge_1.0.weight"]
    saved["module.extra.weight"] = torch.zeros(1)
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match=r"merge_1\.0\.weight.*extra\.weight"):
        store.load_encoder(other, path)


def test_backbone_is_frozen_and_stays_in_eval_mode():
    backbone = build_cnn_backbone("resnet_v2_tiny")
    enc = VRPEncoder(backbone, backbone_channels(backbone), hidden_dim=64).train()
    assert enc.downsample_query.training and enc.transformer_decoder.training
    assert not any(getattr(enc, n).training for n in BACKBONE_LAYERS)
    assert not any(p.requires_grad for p in enc.backbone_parameters())


def test_masked_average_and_pseudo_mask():
    feats = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, 1, 2] = 1
    proto = masked_average(feats, mask)
    assert torch.allclose(proto[..., 0, 0], feats[:, :, 1, 2] / (1 + 5e-4))
    # A query identical to the support: every location whose feature equals a masked
    # support feature up to scale has similarity 1.
    high = torch.rand(2, 8, 4, 4) + 0.1
    sim = pseudo_mask(high, high, torch.ones(2, 1, 4, 4))
    assert sim.shape == (2, 1, 4, 4) and torch.allclose(sim, torch.ones_like(sim), atol=1e-5)
    assert pseudo_mask(high, high, torch.zeros(2, 1, 4, 4)).abs().max() == 0


def _all_pairs_pseudo_mask(support_high, query_high, mask):
    """The official get_pseudo_mask's arithmetic, every support location against every
    query location (VRP-SAM 9c53a6a, model/VRP_encoder.py), as the reference."""
    b, c, h, w = query_high.shape
    mask = torch.nn.functional.interpolate(mask, size=(h, w), mode="bilinear",
                                           align_corners=True)
    q = query_high.reshape(b, c, -1)
    s = (support_high * mask).reshape(b, c, -1).permute(0, 2, 1)
    sim = torch.bmm(s, q) / (torch.bmm(torch.norm(s, 2, 2, True), torch.norm(q, 2, 1, True))
                             + 1e-7)
    return sim.max(1)[0].reshape(b, 1, h, w)


@pytest.mark.parametrize("channels,side,reached,signed", [
    (256, 16, 0.3, False), (256, 16, 0.0, False), (256, 16, 1.0, False),
    (32, 8, 0.5, True), (512, 12, 0.1, False), (2048, 8, 0.05, False), (512, 1, 1.0, False),
    (2048, 2, 0.5, False)])
def test_pseudo_mask_over_reached_locations_is_bit_identical_to_all_pairs(
        channels, side, reached, signed):
    """Only the locations the support mask reaches are multiplied; every value must equal
    the all-pairs product bit for bit (a different value could flip a mask pixel) on one
    thread, as the regression and official comparisons run. With more threads BLAS splits
    a product by its shape, so the last bits may differ, never more."""
    g = torch.Generator().manual_seed(side + channels)
    support = torch.randn(3, channels, side, side, generator=g)
    query = torch.randn(3, channels, side, side, generator=g)
    if not signed:  # layer4 features are ReLU outputs
        support, query = support.relu(), query.relu()
    # a coarser 0/1 mask, as the official one (bilinear-resized: fractional at the border)
    coarse = max(side // 2, 1)
    mask = (torch.rand(3, 1, coarse, coarse, generator=g) < reached).float()
    mask[0] = 0  # one support the mask reaches nowhere
    _same_bits_on_one_thread(support, query, mask)


def _same_bits_on_one_thread(support, query, mask):
    from refseg_bench.regress import cpu_paths

    with cpu_paths():
        expected = _all_pairs_pseudo_mask(support, query, mask)
        assert torch.equal(pseudo_mask(support, query, mask), expected)
        # the norms as cached, computed apart (another batch) and passed in
        norms = [torch.cat([location_norms(x[i:i + 1], m) for i, m in enumerate(masks)])
                 for x, masks in ((support, mask.split(1)), (query, [None] * len(query)))]
        assert torch.equal(pseudo_mask(support, query, mask, *norms), expected)
    torch.testing.assert_close(pseudo_mask(support, query, mask), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 9, 17])
def test_pseudo_mask_with_a_few_reached_locations_is_bit_identical(count):
    """1-3 rows would take BLAS's matrix-vector path (other last bits): padded with
    unreached rows, whose similarity 0 is in the official max anyway."""
    g = torch.Generator().manual_seed(count)
    support = torch.randn(4, 2048, 8, 8, generator=g).relu()
    query = torch.randn(4, 2048, 8, 8, generator=g).relu()
    mask = torch.zeros(4, 1, 8, 8)
    for i in range(4):
        mask[i].view(-1)[torch.randperm(64, generator=g)[:count]] = 1
    _same_bits_on_one_thread(support, query, mask)


def test_sine_position_encoding_follows_detr():
    pos = sine_position_encoding(3, 5, 8, torch.device("cpu"))
    assert pos.shape == (15, 8)
    # Row 0, column 0: y = x = 1 / (n + 1e-6) * 2 pi; channel 0 is sin(y), channel 1 cos(y),
    # channel 4 is sin(x); frequencies are 10000^(2 floor(i/2) / 4).
    y, x = 2 * math.pi / 3, 2 * math.pi / 5
    assert pos[0, 0] == pytest.approx(math.sin(y), abs=1e-5)
    assert pos[0, 1] == pytest.approx(math.cos(y), abs=1e-5)
    assert pos[0, 2] == pytest.approx(math.sin(y / 100), abs=1e-5)
    assert pos[0, 4] == pytest.approx(math.sin(x), abs=1e-5)
    assert pos[14, 4] == pytest.approx(math.sin(2 * math.pi), abs=1e-4)


@pytest.mark.parametrize("variant", ["resnet_v2_tiny", "vgg16_bn_tiny", "resnet50_v2"])
def test_backbone_channels_read_from_modules_match_a_forward_pass(variant):
    backbone = build_cnn_backbone(variant, None, torch.device("cpu"))
    x, outs = torch.zeros(1, 3, 32, 32), []
    with torch.no_grad():
        for name in ("layer0", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(backbone, name)(x)
            outs.append(x.shape[1])
    got = backbone_channels(backbone)
    assert (got.layer2, got.layer3, got.layer4) == tuple(outs[2:])
