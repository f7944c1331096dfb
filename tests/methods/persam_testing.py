"""Shared helpers for the PerSAM tests: a tiny random SAM and small generated images."""

from __future__ import annotations

import numpy as np
import torch

from refseg_bench.models.sam import build_sam

TINY_SIZE = 256


def tiny_sam(seed: int = 0):
    """The tiny SAM (64-d, 16x16 embedding grid at 256) with seeded random weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_sam("tiny", image_size=TINY_SIZE)


def scene(h: int = 90, w: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image (H, W, 3) uint8 with one bright ellipse, and its (H, W) bool mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    mask = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 < 1
    img = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
    img[mask] = (rng.integers(150, 255, (int(mask.sum()), 3))).astype(np.uint8)
    return img, mask
