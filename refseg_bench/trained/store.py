"""Where trained checkpoints live and the files written there.

Layout (``root`` is the method's ``checkpoint_dir`` option, by default
``<results_dir>/checkpoints``)::

    <root>/<method>/<dataset>/fold<f>/<tag>/
        <weights file>   the trained weights in the official format of the method
                         (e.g. vrp_encoder.pt), rewritten every epoch
        train_state.pt   learnable weights, optimiser, scheduler, epoch, step and losses
        train.json       what the weights depend on (settings, models), progress, and the
                         weights file's sha256 once training is complete
        loss_curve.png   per-step loss and per-epoch mean

``tag`` names what the weights depend on beyond the fold (model variant, annotation,
shot, input size), so two configurations never share a directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

STATE_FILE = "train_state.pt"
INFO_FILE = "train.json"
CURVE_FILE = "loss_curve.png"


@dataclass(frozen=True)
class CheckpointKey:
    """What a trained checkpoint depends on; it names the checkpoint directory."""

    method: str
    dataset: str
    fold: int
    tag: str

    def directory(self, root: str | Path) -> Path:
        return Path(root).expanduser() / self.method / self.dataset / f"fold{self.fold}" / self.tag

    def to_dict(self) -> dict:
        return asdict(self)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a file.

    A failed write (full disk, quota, file-size limit) is raised as an ``OSError`` naming
    ``path``: torch reports it only as an opaque ``RuntimeError`` ("unexpected pos").
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        # By path, not through a file object: torch names the archive's records after the
        # file, and a trained checkpoint's sha256 (kept in the regression goldens) is
        # over those bytes.
        torch.save(obj, tmp)
    except RuntimeError as err:
        cause = _write_fault(tmp)
        tmp.unlink(missing_ok=True)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror, str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _write_fault(tmp: Path) -> OSError | None:
    """The OSError that writing more to ``tmp`` raises now (full disk, quota, file-size
    limit), or None when a write succeeds: torch's RuntimeError drops the errno, so the
    failed save is probed with one more write of 1 MiB to the same file."""
    try:
        with open(tmp, "ab") as f:
            f.write(bytes(1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        return err
    return None


def read_info(directory: Path) -> dict | None:
    path = Path(directory) / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_info(directory: Path, info: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / INFO_FILE)


def is_complete(directory: Path, weights_file: str) -> bool:
    """True when training in ``directory`` ran all its epochs and its weights file exists."""
    info = read_info(directory)
    return bool(info and info.get("complete")) and (Path(directory) / weights_file).is_file()


def info_mismatch(expected: dict, found: dict | None) -> list[str]:
    """Keys of ``expected`` whose value differs in a stored ``train.json`` (sorted)."""
    found = found or {}
    return sorted(k for k in expected if found.get(k) != expected[k])
