"""Device and numeric precision for the foundation models.

``precision="bf16"`` runs the forward passes under CUDA autocast in bfloat16 (matmuls and
convolutions in bf16, reductions in fp32), as FSSAM trains; ``"fp32"`` is the default
and the only choice on the CPU, where bf16 autocast is slow and not what any method uses.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from refseg_bench.devices import resolve_device

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, device: str | torch.device) -> torch.device:
    """Validate ``precision`` for ``device`` (resolved with ``resolve_device``); returns
    the device. bf16 needs CUDA: asking for it elsewhere is an error, not a silent fp32."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and dev.type != "cuda":
        raise ValueError(f"precision=bf16 needs a CUDA device, got device={dev}; "
                         "use precision=fp32 on the CPU.")
    return dev


def autocast(device: str | torch.device, precision: str = "fp32") -> AbstractContextManager:
    """Context for model forwards: bf16 CUDA autocast, or nothing for fp32.

    Outputs under bf16 are bfloat16 tensors: cast with ``.float()`` before storing or
    comparing (the SAM encoding helpers do).
    """
    dev = check_precision(precision, device)
    if precision == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return nullcontext()
