"""Latent-space interpolation of DBST: spherical interpolation of the two inverted noise
latents with AdaIN statistics matching, and the interpolation coefficients of the frames.

Both follow DiffMorpher's ``slerp`` (``utils/model_utils.py``): the whole latent is one
vector for the angle; computation in float64; with AdaIN, the per-channel mean and standard
deviation (unbiased variance + 1e-5) of the two endpoints are interpolated linearly and
imposed on the instance-normalised slerp result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_DOT_EPS = 1e-7  # keeps arccos away from +-1 (DiffMorpher's clamp)
_VAR_EPS = 1e-5


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of ``x`` (N, C, H, W): std from the unbiased
    variance plus 1e-5, both shaped (N, C, 1, 1)."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    std = (flat.var(dim=2) + _VAR_EPS).sqrt()
    return flat.mean(dim=2).reshape(n, c, 1, 1), std.reshape(n, c, 1, 1)


def slerp(p0: torch.Tensor, p1: torch.Tensor, alpha: float, adain: bool = True) -> torch.Tensor:
    """Spherical interpolation from ``p0`` (alpha 0) to ``p1`` (alpha 1), both (N, C, H, W),
    returned in ``p0``'s dtype. With ``adain`` the result is instance-normalised and given
    the linearly interpolated per-channel statistics of the endpoints."""
    dtype = p0.dtype
    a, b = p0.double(), p1.double()
    cos = (torch.sum(a * b) / (torch.linalg.norm(a) * torch.linalg.norm(b)))
    theta = torch.arccos(cos.clamp(-1 + _DOT_EPS, 1 - _DOT_EPS))
    out = (a * torch.sin((1 - alpha) * theta) + b * torch.sin(alpha * theta)) / torch.sin(theta)
    if adain:
        m0, s0 = channel_stats(a)
        m1, s1 = channel_stats(b)
        out = F.instance_norm(out) * ((1 - alpha) * s0 + alpha * s1) + (1 - alpha) * m0 \
            + alpha * m1
    return out.to(dtype)


def frame_alphas(n_generated: int, low: float, high: float) -> list[float]:
    """The interpolation coefficient of each generated frame: ``n_generated`` values evenly
    spaced from ``low`` to ``high`` (CAV-SAM: 7 frames, 0.2 .. 0.8); one frame sits at the
    midpoint."""
    if n_generated < 1:
        return []
    if n_generated == 1:
        return [(low + high) / 2]
    return [low + (high - low) * i / (n_generated - 1) for i in range(n_generated)]
