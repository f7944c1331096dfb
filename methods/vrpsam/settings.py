"""Typed options of the VRP-SAM adapter (``configs/methods/vrpsam.yaml``).

Two presets: ``real`` (SAM ViT-H and ResNet-50 v2 from their official files, 512 input, the
official 50-epoch recipe) and ``tiny`` (a tiny random SAM and backbone with a small
budget, for CPU runs and tests). ``size: auto`` takes ``real`` when both official files are
in the checkpoint directory and ``tiny`` otherwise. ``model`` and ``train`` override the
chosen preset key by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from refseg_bench.errors import ConfigError
from refseg_bench.methods.vrpsam.trainer import TrainSettings

SIZES = ("auto", "real", "tiny")


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


@dataclass
class VRPSAMOptions:
    """Everything ``from_config`` accepts; see the YAML file for each key's meaning."""

    size: str = "auto"
    presets: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoint_dir: str = "results/checkpoints"
    train_if_missing: bool = True
    untrained: bool = False
    batch_size: int = 8
    train_workers: int = 0


def _typed(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown vrpsam option(s) {where}.{unknown}; known: {sorted(known)}")
    values = dict(values)
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def parse_options(raw: dict) -> VRPSAMOptions:
    opts = _typed(VRPSAMOptions, raw, "method_args")
    if opts.size not in SIZES:
        raise ConfigError(f"vrpsam method_args.size must be one of {SIZES}; got {opts.size!r}")
    return opts


def preset(opts: VRPSAMOptions, name: str) -> Preset:
    """Preset ``name`` from the options, with ``model`` and ``train`` overrides applied."""
    if name not in opts.presets:
        raise ConfigError(f"vrpsam has no preset {name!r}; configured: {sorted(opts.presets)}")
    body = dict(opts.presets[name])
    model = _typed(ModelSpec, {**body.get("model", {}), **opts.model}, f"presets.{name}.model")
    train = _typed(TrainSettings, {**body.get("train", {}), **opts.train},
                   f"presets.{name}.train")
    if model.sam_checkpoint is not None and (model.prompt_scale, model.logit_scale) != (1, 1):
        raise ConfigError(
            f"vrpsam preset {name!r}: prompt_scale={model.prompt_scale} and logit_scale="
            f"{model.logit_scale} calibrate a random SAM stand-in; with sam_checkpoint set "
            "both must be 1.")
    return Preset(model, train)


def official_files_present(spec: ModelSpec) -> tuple[bool, list[str]]:
    """Whether the SAM and backbone checkpoint files of ``spec`` exist locally; also the
    missing paths, for the message that explains a fall-back to ``tiny``."""
    from refseg_bench.models.checkpoints import resolve_checkpoint

    missing = []
    for ref in (spec.sam_checkpoint, spec.backbone_checkpoint):
        if ref is None:
            continue
        path, _ = resolve_checkpoint(ref)
        if not Path(path).is_file():
            missing.append(str(path))
    return not missing, missing


def choose_preset(opts: VRPSAMOptions) -> tuple[str, Preset, str]:
    """(name, preset, reason): ``auto`` resolves to ``real`` only when its files exist."""
    if opts.size != "auto":
        return opts.size, preset(opts, opts.size), f"size={opts.size} configured"
    real = preset(opts, "real")
    ok, missing = official_files_present(real.model)
    if ok:
        return "real", real, "official SAM and backbone checkpoints found"
    return "tiny", preset(opts, "tiny"), ("official checkpoints missing (" + ", ".join(missing)
                                          + "): using the tiny random SAM and backbone")


def with_model(p: Preset, **changes) -> Preset:
    return Preset(replace(p.model, **changes), p.train)
