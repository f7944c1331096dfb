"""Which SAM a PerSAM adapter runs on: the configured variant with its catalogue
checkpoint, or a tiny random SAM when that checkpoint is absent (``checkpoint: auto``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h", "tiny")


@dataclass(frozen=True)
class SamChoice:
    """What to build: ``variant`` at ``image_size`` with ``checkpoint`` (a catalogue name or
    path; None = random weights); ``fell_back`` says ``auto`` found no checkpoint file."""

    variant: str
    image_size: int
    checkpoint: str | None
    fell_back: bool = False


def choose_sam(variant: str, checkpoint: str | None, image_size: int,
               fallback_variant: str, fallback_image_size: int) -> SamChoice:
    """Resolve the ``checkpoint`` setting.

    ``auto``: the catalogue checkpoint ``sam_<variant>`` if its file is in the checkpoint
    directory, else a random ``fallback_variant`` at ``fallback_image_size`` with a
    warning; ``none``/None: random ``variant`` weights (speed measurements); anything else:
    a catalogue name or a file path, which must exist.
    """
    from refseg_bench.models.checkpoints import checkpoint_dir, resolve_checkpoint

    if variant not in SAM_VARIANTS:
        raise ValueError(f"sam_variant must be one of {SAM_VARIANTS}, got {variant!r}")
    if checkpoint is None or str(checkpoint).lower() in ("none", "null", "random"):
        return SamChoice(variant, image_size, None)
    if checkpoint != "auto":
        return SamChoice(variant, image_size, str(checkpoint))
    if variant == "tiny":
        return SamChoice(variant, image_size, None)
    path, _ = resolve_checkpoint(f"sam_{variant}")
    if path.is_file():
        return SamChoice(variant, image_size, f"sam_{variant}")
    warnings.warn(
        f"PerSAM: no SAM checkpoint at {path} (checkpoint=auto); running on a RANDOM "
        f"{fallback_variant} SAM at {fallback_image_size} px instead. Results are a pipeline "
        f"check only and are recorded with weights=random. Fetch the weights with "
        f"`refseg-bench checkpoints fetch sam_{variant}` (directory: {checkpoint_dir()}).",
        RuntimeWarning, stacklevel=3,
    )
    return SamChoice(fallback_variant, fallback_image_size, None, fell_back=True)


def build_choice(choice: SamChoice, device: torch.device, seed: int = 0):
    """The SAM of ``choice`` in eval mode on ``device``, parameters frozen. Random weights
    are drawn from torch's generator seeded with ``seed`` inside a forked RNG state, so a
    random-weight run is reproducible and the caller's RNG is untouched."""
    from refseg_bench.models.sam import build_sam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_sam(choice.variant, choice.checkpoint, device,
                        image_size=choice.image_size)
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam
