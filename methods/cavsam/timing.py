"""Per-stage wall time of CAV-SAM episodes (for the run record and the benchmark)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

STAGES = ("reference", "lora", "inversion", "generation", "ttga", "propagation")


class Stopwatch:
    """Seconds per stage, summed since the last :meth:`reset`. On a CUDA device the GPU is
    synchronised at both ends of a section, so queued kernels count where they ran."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def section(self, stage: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[stage] += time.perf_counter() - start

    def reset(self) -> dict[str, float]:
        """The totals so far (every stage, 0 where none ran), then start again."""
        out = {s: self.seconds.get(s, 0.0) for s in STAGES}
        out.update({k: v for k, v in self.seconds.items() if k not in out})
        self.seconds = defaultdict(float)
        return out
