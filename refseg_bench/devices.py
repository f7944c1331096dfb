"""Device selection shared by the runner and the model layer."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit ``cuda`` without a GPU is
    an error rather than a silent fall-back, so a recorded device is always the real one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} was asked for but CUDA is not available; "
                           "use device=cpu or device=auto.")
    return dev
