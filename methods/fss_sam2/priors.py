"""The pseudo prompt generator (FSSAM ``model/FSSAM.py``: ``generate_prior_proto``,
``generate_prior_mem``) and the prototype arithmetic shared with the memory refinement and
the calibrated attention.

All functions are batched and differentiable; shapes are given per function. ``EPS`` is
the official ``cosine_eps``: it is added to the denominators of every cosine and min-max
normalisation.

On ``Weighted_GAP``: the released attention (``sam2/modeling/sam/transformer.py``) calls
``self.Weighted_GAP``, which no class defines (the code crashes as shipped; upstream issue
#3). The only ``Weighted_GAP`` in the repository is the module-level masked average
pooling of ``model/FSSAM.py``, used by the prior generator; :func:`masked_average` is that
function, and it is what the calibrated attention uses here too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7
AREA_EPS = 5e-4  # Weighted_GAP: + 0.0005 on the mask area (in pixels)


def masked_average(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked average pooling (``Weighted_GAP``): ``(N, C, h, w)`` features and a
    ``(N, 1, h, w)`` soft mask -> ``(N, C, 1, 1)`` = sum(feat * mask) / (sum(mask) + 5e-4)."""
    h, w = feat.shape[-2:]
    area = F.avg_pool2d(mask, (h, w)) * h * w + AREA_EPS
    return F.avg_pool2d(feat * mask, (h, w)) * h * w / area


def minmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``(x - min) / (max - min + EPS)`` along ``dim``."""
    lo = x.min(dim, keepdim=True)[0]
    hi = x.max(dim, keepdim=True)[0]
    return (x - lo) / (hi - lo + EPS)


def cosine_to_prototype(feat: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every position of ``feat`` ``(N, C, h, w)`` to ``proto``
    ``(N, C, 1, 1)`` -> ``(N, h*w)``, as ``(p . q) / (|p| |q| + EPS)``."""
    q = feat.flatten(2)  # N, C, hw
    p = proto.flatten(2).transpose(1, 2)  # N, 1, C
    sim = (p @ q) / (p.norm(dim=2, keepdim=True) @ q.norm(dim=1, keepdim=True) + EPS)
    return sim[:, 0]


def prototype_prior(query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor,
                    size: tuple[int, int]) -> torch.Tensor:
    """One shot's prior: the cosine of each query position to the masked-average
    prototype of ``support``, min-max normalised over positions and resized (bilinear,
    aligned corners) to ``size``. ``query``, ``support``: ``(N, C, h, w)``; ``mask``:
    ``(N, 1, h, w)``. Returns ``(N, 1, *size)`` in [0, 1]."""
    n, _, h, w = query.shape
    sim = minmax(cosine_to_prototype(query, masked_average(support, mask)))
    return F.interpolate(sim.view(n, 1, h, w), size=size, mode="bilinear", align_corners=True)


def mean_prototype_prior(query: torch.Tensor, supports: torch.Tensor, masks: torch.Tensor,
                         size: tuple[int, int]) -> torch.Tensor:
    """:func:`prototype_prior` of each of ``k`` shots, averaged (FSSAM5s
    ``generate_prior_mem``). ``query``: ``(B, C, h, w)``; ``supports``: ``(B*k, C, h, w)``
    and ``masks``: ``(B*k, 1, h, w)``, episode-major. Returns ``(B, 1, *size)``."""
    b = query.shape[0]
    k = supports.shape[0] // b
    supports = supports.view(b, k, *supports.shape[1:])
    masks = masks.view(b, k, *masks.shape[1:])
    priors = [prototype_prior(query, supports[:, i], masks[:, i], size) for i in range(k)]
    return torch.cat(priors, dim=1).mean(1, keepdim=True)


def dino_priors(query: torch.Tensor, supports: torch.Tensor, masks: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two query priors of the pseudo prompt generator.

    ``query``: ``(B, C, h, w)`` DINOv2 patch features; ``supports``: ``(B, k, C, h, w)``;
    ``masks``: ``(B, k, 1, h, w)`` support masks at the patch grid. Per shot: ``fg`` and
    ``bg`` are :func:`prototype_prior` maps of the foreground and background prototypes at
    ``size``; ``ae = relu(fg - bg)`` min-max normalised over the image. Both are averaged
    over shots. Returns ``(prior_fg, prior_ae)``, each ``(B, 1, *size)`` in [0, 1].
    """
    fg, ae = [], []
    for i in range(supports.shape[1]):
        f = prototype_prior(query, supports[:, i], masks[:, i], size)
        g = prototype_prior(query, supports[:, i], 1 - masks[:, i], size)
        fg.append(f)
        ae.append(minmax(F.relu(f - g).flatten(1)).view_as(f))
    return torch.cat(fg, 1).mean(1, keepdim=True), torch.cat(ae, 1).mean(1, keepdim=True)
