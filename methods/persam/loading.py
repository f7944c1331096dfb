"""Options of the PerSAM adapters and the SAM they run on.

Which SAM follows the shared real-or-random rule (:mod:`refseg_bench.presets`): ``size:
auto`` takes the ``real`` preset (SAM ViT-H at 1024 from its catalogue file) when the file
is in the checkpoint directory, else the ``tiny`` random SAM at 256 with a loud notice;
``model`` overrides the chosen preset key by key (e.g. ``model.checkpoint=null`` for random
ViT-H weights in speed measurements, or a file path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from refseg_bench.methods.persam.prior import PERSEG_FOREGROUND
from refseg_bench.presets import SizeChoice, choose_size, preset_section

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h", "tiny")
DEFAULT_PRESETS = {
    "real": {"model": {"sam": "vit_h", "checkpoint": "sam_vit_h", "image_size": 1024}},
    "tiny": {"model": {"sam": "tiny", "checkpoint": None, "image_size": 256}},
}


@dataclass(frozen=True)
class SamSpec:
    """The SAM: ``sam`` variant, ``checkpoint`` (a catalogue name or file path; None =
    random weights drawn with ``random_seed``) and square input ``image_size`` (px)."""

    sam: str = "vit_h"
    checkpoint: str | None = "sam_vit_h"
    image_size: int = 1024

    def __post_init__(self) -> None:
        if self.sam not in SAM_VARIANTS:
            raise ValueError(f"model.sam must be one of {SAM_VARIANTS}; got {self.sam!r}")


@dataclass(frozen=True)
class PerSAMOptions:
    """``random_seed``: random weights; ``reference_mask_value``: the red value a reference
    mask is drawn with before SAM's preprocessing (PerSeg's 128), which sets which feature
    cells count as foreground; ``encoder_batch``: images per encoder forward (1 = one at a
    time, as the official code); ``cache_mb``: embedding cache size (MiB);
    ``reference_cache_mb``: cache of the reference stage (target embedding, PerSAM-F's
    fitted weights) by reference content (MiB; 0 = recompute for every episode)."""

    size: str = "auto"
    presets: dict = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    model: dict = field(default_factory=dict)
    random_seed: int = 0
    reference_mask_value: int = PERSEG_FOREGROUND
    encoder_batch: int = 1
    cache_mb: int = 2048
    reference_cache_mb: int = 64

    def __post_init__(self) -> None:
        if self.reference_cache_mb < 0:
            raise ValueError(f"reference_cache_mb must be >= 0, got {self.reference_cache_mb}")
        if not 0 < self.reference_mask_value < 256:
            raise ValueError(f"reference_mask_value must be in 1..255, got "
                             f"{self.reference_mask_value}")
        if self.encoder_batch < 1:
            raise ValueError(f"encoder_batch must be >= 1, got {self.encoder_batch}")


@dataclass(frozen=True)
class PerSAMFOptions(PerSAMOptions):
    """PerSAM-F's fitting: ``train_iters`` AdamW steps at ``lr``, ``eps``, ``weight_decay``."""

    train_iters: int = 1000
    lr: float = 1e-3
    eps: float = 1e-4
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_iters < 1:
            raise ValueError(f"train_iters must be >= 1, got {self.train_iters}")


def choose_sam(opts: PerSAMOptions, method: str) -> tuple[SizeChoice, SamSpec]:
    """The preset taken by the size rule and its SAM spec (overrides applied)."""
    real = preset_section(opts.presets, "real", "model", SamSpec, opts.model, method) \
        if opts.size in ("auto", "real") else None
    choice = choose_size(opts.size, method, [real.checkpoint] if real else [None])
    return choice, preset_section(opts.presets, choice.name, "model", SamSpec, opts.model,
                                  method)


def build_spec(spec: SamSpec, device: torch.device, seed: int = 0):
    """The SAM of ``spec`` in eval mode on ``device``, parameters frozen. Random weights
    are drawn from torch's generator seeded with ``seed`` inside a forked RNG state, so a
    random-weight run is reproducible and the caller's RNG is untouched."""
    from refseg_bench.models.sam import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(spec.sam, spec.checkpoint, device, image_size=spec.image_size)
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam
