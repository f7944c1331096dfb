"""Device selection shared by the runner and the model layer."""

from __future__ import annotations

import torch

from refseg_bench.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit ``cuda`` without a GPU is
    an error rather than a silent fall-back, so a recorded device is always the real one.
    A name torch does not know (``tpu``) or an unavailable device is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device name; use auto, cpu, cuda, "
                          "cuda:N or mps.") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} was asked for but CUDA is not available; "
                          "use device=cpu or device=auto.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s), numbered from 0.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} was asked for but MPS is not available; "
                          "use device=cpu or device=auto.")
    return dev
