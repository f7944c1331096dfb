"""Where trained VRP encoders live and the file formats they are written in.

Layout (``root`` is ``method_args.checkpoint_dir``, by default
``<results_dir>/checkpoints``)::

    <root>/vrpsam/<dataset>/fold<f>/<backbone>_<sam>_<annotation>_<shot>shot_<size>px/
        vrp_encoder.pt   the encoder in the official format (written every epoch)
        train_state.pt   optimiser, scheduler, epoch, step and loss history (for resuming)
        train.json       settings, progress and the sha256 of vrp_encoder.pt when complete
        loss_curve.png   per-step loss and per-epoch mean

The official format is what VRP-SAM's ``Logger.save_model_miou`` writes: the flat
``state_dict()`` of the DDP-wrapped encoder, so every key starts with ``module.`` and the
frozen backbone (``layer0`` .. ``layer4``) is included. Such a file loads strictly into
:class:`~refseg_bench.methods.vrpsam.encoder.VRPEncoder` with or without the prefix.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from refseg_bench.models.checkpoints import load_state_dict, load_strict, sha256_file

ENCODER_FILE = "vrp_encoder.pt"
STATE_FILE = "train_state.pt"
INFO_FILE = "train.json"
CURVE_FILE = "loss_curve.png"
DDP_PREFIX = "module."


@dataclass(frozen=True)
class CheckpointKey:
    """What a trained encoder depends on; it names the checkpoint directory."""

    dataset: str
    fold: int
    backbone: str
    sam: str
    annotation: str
    shot: int
    image_size: int

    def directory(self, root: str | Path) -> Path:
        tag = (f"{self.backbone}_{self.sam}_{self.annotation}_{self.shot}shot_"
               f"{self.image_size}px")
        return Path(root).expanduser() / "vrpsam" / self.dataset / f"fold{self.fold}" / tag

    def to_dict(self) -> dict:
        return asdict(self)


def official_state_dict(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's state dict with the ``module.`` prefix of a DDP-saved checkpoint."""
    return {DDP_PREFIX + k: v.detach().cpu() for k, v in encoder.state_dict().items()}


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_encoder(encoder: torch.nn.Module, path: Path) -> None:
    atomic_save(official_state_dict(encoder), path)


def load_encoder(encoder: torch.nn.Module, path: str | Path) -> str:
    """Load an official-format file (keys with or without ``module.``) strictly into
    ``encoder``; returns the file's sha256. Raises CheckpointError on any key mismatch."""
    load_strict(encoder, load_state_dict(path), strip_prefixes=(DDP_PREFIX,))
    return sha256_file(path)


def read_info(directory: Path) -> dict | None:
    path = directory / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_info(directory: Path, info: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / INFO_FILE)


def is_complete(directory: Path) -> bool:
    """True when training in ``directory`` ran all its epochs and the encoder file exists."""
    info = read_info(directory)
    return bool(info and info.get("complete")) and (directory / ENCODER_FILE).is_file()
