"""VRP-SAM's weights file: the official format, written and read.

The official format is what VRP-SAM's ``Logger.save_model_miou`` writes: the flat
``state_dict()`` of the DDP-wrapped encoder, so every key starts with ``module.`` and the
frozen backbone (``layer0`` .. ``layer4``) is included. Such a file loads strictly into
:class:`~refseg_bench.methods.vrpsam.encoder.VRPEncoder` with or without the prefix.
Trained checkpoints live in the shared layout of :mod:`refseg_bench.trained.store`, with
``tag = <backbone>_<sam>_<annotation>_<shot>shot_<size>px``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from refseg_bench.models.checkpoints import load_state_dict, load_strict, sha256_file
from refseg_bench.trained.store import atomic_save

ENCODER_FILE = "vrp_encoder.pt"
DDP_PREFIX = "module."


def official_state_dict(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's state dict with the ``module.`` prefix of a DDP-saved checkpoint."""
    return {DDP_PREFIX + k: v.detach().cpu() for k, v in encoder.state_dict().items()}


def save_encoder(encoder: torch.nn.Module, path: Path) -> None:
    atomic_save(official_state_dict(encoder), path)


def load_encoder(encoder: torch.nn.Module, path: str | Path) -> str:
    """Load an official-format file (keys with or without ``module.``) strictly into
    ``encoder``; returns the file's sha256. Raises CheckpointError on any key mismatch."""
    load_strict(encoder, load_state_dict(path), strip_prefixes=(DDP_PREFIX,))
    return sha256_file(path)
