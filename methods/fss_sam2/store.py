"""FSSAM's weights file: the official format, written and read.

The official ``train.py`` saves ``{'epoch': int, 'state_dict': ..., 'optimizer': ...}``
where ``state_dict`` is the DDP-wrapped ``OneModel``'s: every key starts with
``module.sam2.`` (the whole SAM 2 video predictor, frozen parts included) or
``module.dino.`` (the whole DINOv2). Such a file loads strictly into
:class:`~.network.FSSAMModel` with or without the ``module.`` prefix (``test.py`` strips
it after a failed load); the optimizer state is not needed to evaluate and is ignored
(``test.py`` reads it, so files written here carry one). Trained checkpoints live in the
shared layout of :mod:`refseg_bench.trained.store`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import load_state_dict, load_strict, sha256_file
from refseg_bench.trained.store import atomic_save

WEIGHTS_FILE = "fssam.pth"
DDP_PREFIX = "module."


def official_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with the ``module.`` prefix of a DDP-saved checkpoint."""
    return {DDP_PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(model: torch.nn.Module, path: Path, epoch: int, optimizer: dict) -> None:
    atomic_save({"epoch": int(epoch), "state_dict": official_state_dict(model),
                 "optimizer": optimizer}, path)


def load_checkpoint(model: torch.nn.Module, path: str | Path) -> str:
    """Load an official-format file strictly into ``model`` (an ``FSSAMModel``); returns
    the file's sha256. Raises CheckpointError when the file is not an official checkpoint
    (no ``state_dict`` entry) or any key or shape does not fit."""
    path = Path(path)
    try:
        state = load_state_dict(path, key="state_dict")
    except CheckpointError as err:
        raise CheckpointError(f"{err} An FSSAM checkpoint is a dict with 'epoch', "
                              "'state_dict' (module.sam2.* and module.dino.*) and "
                              "'optimizer', as FSSAM's train.py writes it.") from err
    load_strict(model, state, strip_prefixes=(DDP_PREFIX,))
    return sha256_file(path)
