"""Otsu's threshold on a tensor of activations (TTGA turns cosine maps into masks with it).

Histogram-based, as the usual implementations (e.g. scikit-image's ``threshold_otsu``):
``bins`` equal bins between the minimum and the maximum; the threshold is the centre of the
bin that maximises the between-class variance of "at or below" against "above". A constant
input has no threshold that separates anything: its value is returned, and ``values >
threshold`` is then empty.
"""

from __future__ import annotations

import torch


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (any shape, float); pixels ``> threshold`` are the
    upper class."""
    v = values.detach().reshape(-1).double()
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return lo
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    centres = lo + (torch.arange(bins, dtype=torch.float64, device=v.device) + 0.5) \
        * (hi - lo) / bins
    w0 = counts.cumsum(0)  # pixels at or below each bin
    w1 = counts.sum() - w0
    s0 = (counts * centres).cumsum(0)
    mean0 = s0 / w0.clamp(min=1)
    mean1 = (s0[-1] - s0) / w1.clamp(min=1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    between[w1 == 0] = -1  # the last bin puts everything in one class
    return float(centres[int(torch.argmax(between))])


def otsu_mask(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """``values > otsu_threshold(values)`` as a bool tensor of the same shape."""
    return values > otsu_threshold(values, bins)
