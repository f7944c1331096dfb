"""Typed options of the VRP-SAM adapter (``configs/methods/vrpsam.yaml``).

Two presets: ``real`` (SAM ViT-H and ResNet-50 v2 from their official files, 512 input, the
official 50-epoch recipe) and ``tiny`` (a tiny random SAM and backbone with a small
budget, for CPU runs and tests), chosen by the shared ``size`` rule
(:mod:`refseg_bench.presets`). ``model`` and ``train`` override the chosen preset key by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from refseg_bench.errors import ConfigError
from refseg_bench.methods.vrpsam.trainer import TrainSettings
from refseg_bench.presets import choose_size, preset_section
from refseg_bench.trained.weights import TrainedOptions


@dataclass(frozen=True)
class ModelSpec:
    """The networks: SAM variant and checkpoint (catalogue name, path, or None for random
    weights), its square input size, the backbone and its checkpoint, the encoder input size
    ``image_size`` and ``init_seed`` for every random initialisation (random SAM and backbone
    weights must be identical at training and evaluation time).

    ``prompt_scale`` multiplies the VRP tokens before SAM and ``logit_scale`` SAM's mask
    logits. Both calibrate a *random* SAM stand-in and must be 1 for a SAM loaded from a
    checkpoint (VRP-SAM has no such factors). An untrained decoder attends almost uniformly
    to layer-normalised (unit-scale) tokens and its logits span only about +-0.5, where
    BCE + Dice cannot move a probability far from 0.5: even prompt tokens optimised freely
    per image then segment nothing. With tokens x8 and logits x20 (a trained SAM's +-10)
    the same per-image optimisation reaches IoU 0.5-0.9 on the synthetic scenes, so the
    tiny pipeline can learn. Both values are recorded with every run.
    """

    sam: str = "vit_h"
    sam_checkpoint: str | None = "sam_vit_h"
    sam_image_size: int = 1024
    backbone: str = "resnet50_v2"
    backbone_checkpoint: str | None = "resnet50_v2"
    image_size: int = 512
    num_queries: int = 50
    init_seed: int = 0
    prompt_scale: float = 1.0
    logit_scale: float = 1.0


@dataclass(frozen=True)
class Preset:
    model: ModelSpec
    train: TrainSettings


@dataclass(frozen=True)
class VRPSAMOptions(TrainedOptions):
    """Everything ``from_config`` accepts; see the YAML file for each key's meaning
    (``checkpoint``, ``checkpoint_dir``, ``train_if_missing`` and ``untrained`` are the
    options every trained method shares)."""

    size: str = "auto"
    presets: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    batch_size: int = 8
    train_workers: int = 0
    support_cache_mb: int = 1024
    image_cache_mb: int = 1024

    def __post_init__(self) -> None:
        from refseg_bench.options import check_bounds

        check_bounds(self, ("batch_size",), ("train_workers", "support_cache_mb",
                                             "image_cache_mb"))


def preset(opts: VRPSAMOptions, name: str) -> Preset:
    """Preset ``name`` from the options, with ``model`` and ``train`` overrides applied."""
    model = preset_section(opts.presets, name, "model", ModelSpec, opts.model, "vrpsam")
    train = preset_section(opts.presets, name, "train", TrainSettings, opts.train, "vrpsam")
    if model.sam_checkpoint is not None and (model.prompt_scale, model.logit_scale) != (1, 1):
        raise ConfigError(
            f"vrpsam preset {name!r}: prompt_scale={model.prompt_scale} and logit_scale="
            f"{model.logit_scale} calibrate a random SAM stand-in; with sam_checkpoint set "
            "both must be 1.")
    return Preset(model, train)


def choose_preset(opts: VRPSAMOptions) -> tuple[str, Preset, str]:
    """(name, preset, reason) by the shared real-or-random rule (:mod:`refseg_bench.presets`)."""
    real = preset(opts, "real") if "real" in opts.presets else None
    refs = [real.model.sam_checkpoint, real.model.backbone_checkpoint] if real else [None]
    choice = choose_size(opts.size, "vrpsam", refs)
    return choice.name, preset(opts, choice.name), choice.reason


def with_model(p: Preset, **changes) -> Preset:
    return Preset(replace(p.model, **changes), p.train)
