"""Iterative memory refinement (FSSAM ``model/FSSAM.py`` ``mem_refine``), at the memory grid.

Each step, with ``s`` the support-to-query prior (computed once) and ``q`` the prior of
the query FG memory against the prototype of the "ae" memory weighted by ``prior_ae``::

    w        = relu(q + s - 1)                 (v2: then min-max normalised)
    ae_mem   = fg_mem * w + ae_mem * (1 - w)
    prior_ae = minmax(prior_fg * w + prior_ae * (1 - w))

The official flags are 3 iterations of version v1 (``test.sh``: ``--num_refine 3
--ver_refine v1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refseg_bench.methods.fss_sam2.priors import mean_prototype_prior, minmax

VERSIONS = ("v1", "v2")


def refine_step(fg_mem: torch.Tensor, ae_mem: torch.Tensor, prior_fg: torch.Tensor,
                prior_ae: torch.Tensor, support_prior: torch.Tensor, version: str = "v1"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One refinement. ``fg_mem``, ``ae_mem``: ``(B, 64, h, w)`` query memories;
    ``prior_fg``, ``prior_ae``, ``support_prior``: ``(B, 1, h, w)``. Returns the new
    ``(ae_mem, prior_ae)``."""
    if version not in VERSIONS:
        raise ValueError(f"refinement version must be one of {VERSIONS}; got {version!r}")
    size = tuple(fg_mem.shape[-2:])
    q = mean_prototype_prior(fg_mem, ae_mem, prior_ae, size)
    w = F.relu(q + (support_prior - 1.0))
    if version == "v2":
        w = minmax(w.flatten(1)).view_as(w)
    ae_mem = fg_mem * w + ae_mem * (1.0 - w)
    prior_ae = prior_fg * w + prior_ae * (1.0 - w)
    return ae_mem, minmax(prior_ae.flatten(1)).view_as(prior_ae)


def refine_memory(support_mem: torch.Tensor, support_masks: torch.Tensor, fg_mem: torch.Tensor,
                  ae_mem: torch.Tensor, prior_fg: torch.Tensor, prior_ae: torch.Tensor,
                  iterations: int = 3, version: str = "v1"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``iterations`` refinement steps of the query "ae" memory.

    ``support_mem``: ``(B*k, 64, h, w)`` episode-major support memories and
    ``support_masks``: ``(B*k, 1, h, w)`` their masks at the memory grid; the query tensors
    as in :func:`refine_step`. Returns the refined ``(ae_mem, prior_ae)``.
    """
    if iterations == 0:
        return ae_mem, prior_ae
    size = tuple(fg_mem.shape[-2:])
    support_prior = mean_prototype_prior(fg_mem, support_mem, support_masks, size)
    for _ in range(iterations):
        ae_mem, prior_ae = refine_step(fg_mem, ae_mem, prior_fg, prior_ae, support_prior,
                                       version)
    return ae_mem, prior_ae
