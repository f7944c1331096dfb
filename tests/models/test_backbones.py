"""ResNet-50 v2, VGG-16-BN and DINOv2: official key layouts, shapes and strides, tiny
variants built, saved, strictly reloaded, run and cached."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.backbones import (
    VGG_SPLITS,
    build_cnn_backbone,
    resnet_v2_from_official,
    vgg_from_official,
)
from refseg_bench.models.cache import EmbeddingCache, EncoderId
from refseg_bench.models.dinov2 import DINOV2_SPECS, DinoV2, build_dinov2
from refseg_bench.models.provenance import weights_info

_STEM = {"layer0.0": "conv1", "layer0.1": "bn1", "layer0.3": "conv2", "layer0.4": "bn2",
         "layer0.6": "conv3", "layer0.7": "bn3"}


def _to_resnet_official(sd):
    """Our keys -> resnet50_v2.pth names (conv1, bn1, ..., layer1..4, fc), as PFENet saves."""
    out = OrderedDict()
    for k, v in sd.items():
        prefix = k.rsplit(".", 1)[0]
        out[f"{_STEM[prefix]}.{k.rsplit('.', 1)[1]}" if prefix in _STEM else k] = v
    out["fc.weight"], out["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    return out


def _to_vgg_official(sd):
    out = OrderedDict()
    for k, v in sd.items():
        layer, index, param = k.split(".")
        out[f"features.{VGG_SPLITS[int(layer[-1])][0] + int(index)}.{param}"] = v
    out["classifier.0.weight"] = torch.zeros(4, 4)
    return out


def test_resnet50_v2_official_keys_map_one_to_one():
    model = build_cnn_backbone("resnet50_v2")
    official = _to_resnet_official(model.state_dict())
    assert {"conv1.weight", "bn3.running_var", "layer4.2.conv3.weight", "fc.bias"} <= set(official)
    assert list(resnet_v2_from_official(official)) == list(model.state_dict())
    assert "layer0.0.weight" in model.state_dict()  # the VRP-SAM module names


def test_resnet50_v2_is_dilated_with_output_stride_8():
    model = build_cnn_backbone("resnet50_v2")
    assert model.layer3[0].conv2.dilation == (1, 1) and model.layer3[1].conv2.dilation == (2, 2)
    assert model.layer4[0].conv2.dilation == (2, 2) and model.layer4[2].conv2.dilation == (4, 4)
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [128, 256, 512, 1024, 2048]
    assert [f.shape[-1] for f in feats] == [16, 16, 8, 8, 8]


def test_vgg16_bn_layers_and_official_keys():
    model = build_cnn_backbone("vgg16_bn")
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]
    official = _to_vgg_official(model.state_dict())
    assert "features.34.weight" in official and "features.41.running_mean" in official
    assert list(vgg_from_official(official)) == list(model.state_dict())


@pytest.mark.parametrize(("variant", "to_official"), [("resnet_v2_tiny", _to_resnet_official),
                                                      ("vgg16_bn_tiny", _to_vgg_official)])
def test_tiny_cnn_reloads_from_our_and_official_layouts(variant, to_official, tmp_path):
    torch.manual_seed(0)
    model = build_cnn_backbone(variant)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = model(x)
    sd = model.state_dict()
    vrp_like = {f"module.{k}": v for k, v in sd.items()}  # a VRP-SAM DDP checkpoint's keys
    official = to_official(sd)
    if variant.startswith("resnet"):
        official["fc.weight"] = torch.zeros(1000, 256)
    for i, layout in enumerate((vrp_like, official)):
        torch.save(layout, tmp_path / f"{i}.pth")
        again = build_cnn_backbone(variant, tmp_path / f"{i}.pth")
        assert weights_info(again).weights == "unverified"
        with torch.no_grad():
            for a, b in zip(ref, again(x), strict=True):
                torch.testing.assert_close(a, b)


def test_backbone_checkpoint_with_extra_keys_is_refused(tmp_path):
    sd = build_cnn_backbone("resnet_v2_tiny").state_dict()
    sd["layer5.0.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys 1: \[layer5.0.weight\]"):
        build_cnn_backbone("resnet_v2_tiny", tmp_path / "x.pth")


def _on_meta(spec_name):
    with torch.device("meta"):  # shapes and names only: no memory, no init cost
        return DinoV2(DINOV2_SPECS[spec_name])


def test_dinov2_official_key_names():
    keys = set(_on_meta("vitb14").state_dict())
    expected = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
                "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for i in range(12):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            expected |= {f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"}
        expected |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"}
    assert keys == expected
    assert _on_meta("vitb14").pos_embed.shape == (1, 37 * 37 + 1, 768)
    vitl = _on_meta("vitl14").state_dict()
    assert vitl["pos_embed"].shape == (1, 37 * 37 + 1, 1024) and "blocks.23.ls2.gamma" in vitl


def test_dinov2_tiny_interpolates_positions_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = build_dinov2("tiny")
    x = torch.randn(1, 3, 70, 84)  # a 5 x 6 grid from the stored 4 x 4
    with torch.no_grad():
        feats = model.patch_features(x)
        out = model.forward_features(x)
    assert feats.shape == (1, 32, 5, 6) and out["x_prenorm"].shape == (1, 31, 32)
    torch.save(model.state_dict(), tmp_path / "d.pth")
    again = build_dinov2("tiny", tmp_path / "d.pth")
    with torch.no_grad():
        torch.testing.assert_close(again.patch_features(x), feats)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model.patch_features(torch.zeros(1, 3, 50, 56))


def test_backbone_features_hit_the_cache():
    import numpy as np

    model = build_dinov2("tiny")
    cache = EmbeddingCache()
    enc = EncoderId.of(model, 56)

    def encode(images):
        x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
        with torch.no_grad():
            return model.patch_features(x)

    images = [np.full((56, 56, 3), i, np.uint8) for i in range(3)]
    cache.encode_batch(images, enc, encode)
    cache.encode_batch(images[::-1], enc, encode)
    assert cache.stats.encoder_passes == 1 and cache.stats.hits == 3


def test_dinov2_explicit_attention_is_the_same_function():
    """``explicit`` (the official arithmetic without xFormers) and ``sdpa`` compute the same
    attention up to rounding; an unknown kind is refused."""
    torch.manual_seed(0)
    model = build_dinov2("tiny")
    x = torch.randn(2, 3, 56, 70)
    with torch.no_grad():
        fused = model.forward_features(x)["x_prenorm"]
        explicit = model.set_attention("explicit").forward_features(x)["x_prenorm"]
    assert all(b.attn.kind == "explicit" for b in model.blocks)
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attention must be one of"):
        model.set_attention("flash")
