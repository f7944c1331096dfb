"""Identity of the frozen foundations a checkpoint was trained on top of."""

from __future__ import annotations

import hashlib

import torch

from refseg_bench.methods.fss_sam2.network import LEARNABLE

_ATTR = "fss_sam2_frozen_identity"


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and values of a state dict."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def frozen_identity(model) -> dict[str, str]:
    """``{"sam2": ..., "dino": ...}``: each model's checkpoint sha256, or for random
    weights a fingerprint of the parts training never changes (SAM 2 without the three
    learnable modules; all of DINOv2). Memoised on ``model`` at its first call, which must
    come before training or loading a trained file."""
    from refseg_bench.models.provenance import weights_info

    cached = getattr(model, _ATTR, None)
    if cached is not None:
        return cached
    sam2_sha, dino_sha = weights_info(model.sam2).sha256, weights_info(model.dino).sha256
    frozen = {k: v for k, v in model.sam2.state_dict().items()
              if k.split(".")[0] not in LEARNABLE}
    out = {"sam2": sam2_sha or "params:" + fingerprint(frozen),
           "dino": dino_sha or "params:" + fingerprint(model.dino.state_dict())}
    object.__setattr__(model, _ATTR, out)
    return out
