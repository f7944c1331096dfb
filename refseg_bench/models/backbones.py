"""CNN backbones of VRP-SAM: the PSPNet-style ResNet-50 "v2" and VGG-16-BN, both split
into ``layer0`` ... ``layer4`` as in VRP-SAM's ``model/VRP_encoder.py``.

ResNet-50 v2 (PFENet / VRP-SAM ``model/base/resnet.py``): a deep stem of three 3x3
convolutions (64, 64, 128 channels, the first with stride 2) and a max-pool form
``layer0``; bottleneck stages ``layer1`` ... ``layer4`` (3, 4, 6, 3 blocks) follow, with
``layer3`` and ``layer4`` dilated instead of strided (torchvision's
``replace_stride_with_dilation=[False, True, True]``: the first block of a dilated stage
keeps the previous dilation), so the output stride is 8: a 512 x 512 input gives 64 x 64
maps with 256, 512, 1024, 2048 channels after layer1 ... layer4. (PFENet itself dilates
every block of layer3/layer4, first blocks included; the weights are the same.)

VGG-16-BN: torchvision's ``features`` split at indices 0-6, 7-13, 14-23, 24-33, 34-42
(the last max-pool is unused); strides 2, 4, 8, 16, 16; 64, 128, 256, 512, 512 channels.

State-dict keys are those of the VRP-SAM model (``layer0.0.weight``, ...), which is what a
VRP-SAM checkpoint holds after ``module.`` is stripped. Official ImageNet files
(``resnet50_v2.pth``: ``conv1.weight``, ``bn1.*``, ``layer1.*``, ``fc.*``; torchvision VGG:
``features.N.*``, ``classifier.*``) are renamed on load by the explicit tables below; only
the unused classifier (``fc.*`` / ``classifier.*``) is dropped, every other key must match.
Inputs: ImageNet-normalised RGB (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD` on 0..1).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from refseg_bench.devices import resolve_device
from refseg_bench.models.checkpoints import load_checkpoint_into
from refseg_bench.models.provenance import WeightsInfo, attach_weights_info

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 residual block, 4x channel expansion."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _stage(inplanes: int, planes: int, blocks: int, stride: int, dilate: bool,
           dilation: int) -> tuple[nn.Sequential, int]:
    """One bottleneck stage; returns it and the dilation after it (torchvision rule: a
    dilated stage trades its stride for dilation, its first block keeps the old one)."""
    first_dilation = dilation
    if dilate:
        dilation, stride = dilation * stride, 1
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
    layers += [Bottleneck(planes * 4, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers), dilation


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class ResNetV2(nn.Module):
    """Deep-stem dilated ResNet (output stride 8). ``blocks`` per stage; ``width`` = the
    stem / layer1 width (64 for ResNet-50; smaller only for tests).

    ``forward(x)``: x B x 3 x H x W -> (f0, f1, f2, f3, f4) from layer0 ... layer4, at
    strides 4, 4, 8, 8, 8 with 2w, 4w, 8w, 16w, 32w channels (ResNet-50: 128, 256, 512,
    1024, 2048).
    """

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 6, 3), width: int = 64) -> None:
        super().__init__()
        w = width
        self.layer0 = nn.Sequential(*_conv_bn_relu(3, w, 2), *_conv_bn_relu(w, w),
                                    *_conv_bn_relu(w, 2 * w),
                                    nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        inplanes, dilation = 2 * w, 1
        stages = []
        for planes, n, stride, dilate in zip((w, 2 * w, 4 * w, 8 * w), blocks, (1, 2, 2, 2),
                                             (False, False, True, True), strict=True):
            stage, dilation = _stage(inplanes, planes, n, stride, dilate, dilation)
            stages.append(stage)
            inplanes = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = [self.layer0(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            feats.append(layer(feats[-1]))
        return tuple(feats)


# Official ResNet v2 stem names -> positions inside layer0 (ReLUs sit at 2, 5, 8; pool at 9).
_RESNET_STEM = {"conv1": "layer0.0", "bn1": "layer0.1", "conv2": "layer0.3", "bn2": "layer0.4",
                "conv3": "layer0.6", "bn3": "layer0.7"}


def resnet_v2_from_official(sd: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename a ``resnet50_v2.pth`` state dict to our keys; drops ``fc.*`` (the ImageNet
    classifier). A state dict already in our layout (``layer0.*``) passes unchanged."""
    out = OrderedDict()
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        out[f"{_RESNET_STEM[head]}.{rest}" if head in _RESNET_STEM else key] = value
    return out


# VRP-SAM's split of torchvision vgg16_bn.features (get_vgg16_layer).
VGG_SPLITS = ((0, 7), (7, 14), (14, 24), (24, 34), (34, 43))
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M")


class VGG16BN(nn.Module):
    """VGG-16 with batch norm split into layer0 ... layer4 (see module docstring).
    ``width`` scales every channel count (64 = the real network). ``forward`` returns
    the five layer outputs."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        features: list[nn.Module] = []
        cin = 3
        for v in _VGG16_CFG:
            if v == "M":
                features.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                cout = v * width // 64
                features += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True)]
                cin = cout
        for i, (a, b) in enumerate(VGG_SPLITS):
            setattr(self, f"layer{i}", nn.Sequential(*features[a:b]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = []
        for i in range(5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return tuple(feats)


def vgg_from_official(sd: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename torchvision / PFENet ``vgg16_bn`` keys (``features.N.*``) to layerK.(N-start);
    drops ``classifier.*``. Keys already in our layout pass unchanged."""
    out = OrderedDict()
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        if head == "classifier":
            continue
        if head == "features":
            index, _, param = rest.partition(".")
            k = next((i for i, (a, b) in enumerate(VGG_SPLITS) if a <= int(index) < b), None)
            if k is not None:
                key = f"layer{k}.{int(index) - VGG_SPLITS[k][0]}.{param}"
        out[key] = value
    return out


_CNN_VARIANTS = {
    "resnet50_v2": (lambda: ResNetV2((3, 4, 6, 3), 64), resnet_v2_from_official),
    "resnet_v2_tiny": (lambda: ResNetV2((1, 1, 1, 1), 8), resnet_v2_from_official),
    "vgg16_bn": (lambda: VGG16BN(64), vgg_from_official),
    "vgg16_bn_tiny": (lambda: VGG16BN(8), vgg_from_official),
}


def build_cnn_backbone(variant: str, checkpoint: str | Path | None = None,
                       device: str | torch.device = "cpu") -> nn.Module:
    """``resnet50_v2`` | ``vgg16_bn`` (and ``*_tiny`` for tests), frozen in eval mode.

    ``checkpoint``: a catalogue name (``"resnet50_v2"``, ``"vgg16_bn"``) or a path to an
    official ImageNet file or a state dict in our layout (``module.`` is stripped).
    """
    if variant not in _CNN_VARIANTS:
        raise ValueError(f"unknown backbone {variant!r}; expected one of {sorted(_CNN_VARIANTS)}")
    make, convert = _CNN_VARIANTS[variant]
    model = make()
    if checkpoint is None:
        info = WeightsInfo.random(variant)
    else:
        info = load_checkpoint_into(model, checkpoint, model=variant, convert=convert)
    model = model.to(resolve_device(str(device))).eval().requires_grad_(False)
    attach_weights_info(model, info)
    return model
