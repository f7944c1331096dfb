"""TTGA, test-time geometric alignment: tune SAM 2's FPN neck on the one reference.

Only ``image_encoder.neck`` (the lateral 1x1 convolutions) changes; the Hiera trunk runs
without gradients and every other SAM 2 part is frozen. The features are the neck's
``vision_features`` (stride 16, the map SAM 2's decoder and memory attention read). A
prototype is the masked average of a feature map, the activation the cosine similarity of
every cell with it, turned into a probability (``rescale``: (1 + cos) / 2, ``sigmoid``:
sigmoid(cos / T)) and into a mask by Otsu's threshold.

The "augmentative cyclic consistency" loss per step, on a fresh random augmentation of
the reference (photometric, then affine on image and mask alike):

- forward: BCE of the augmented image's activation under the *original* reference's
  prototype against the augmented mask;
- cycle: the Otsu mask of that activation gives a prototype of the augmented image, whose
  activation on the original reference is held to the reference mask by BCE.

Adam with weight decay and a cosine learning-rate schedule over the steps.
:meth:`NeckTuner.restore` puts the neck's original weights back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from refseg_bench.methods.cavsam.otsu import otsu_mask
from refseg_bench.methods.cavsam.settings import TTGASpec

_MEAN = (0.485, 0.456, 0.406)  # SAM 2's ImageNet normalisation of 0..1 RGB
_STD = (0.229, 0.224, 0.225)
_EPS = 1e-6


@dataclass
class TuneReport:
    """Loss of the first and last step (forward + weighted cycle) and the steps whose
    cycle term was dropped because Otsu's mask of the augmented image was empty."""

    first_loss: float
    last_loss: float
    empty_cycle_steps: int


def to_unit_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) float in [0, 1] (PIL bilinear, as SAM 2's
    frame loader)."""
    resized = np.asarray(Image.fromarray(image).resize((size, size)), np.float32) / 255.0
    return torch.from_numpy(resized).permute(2, 0, 1)[None]


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def prototype(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Masked average (1, C) of ``features`` (1, C, h, w) under ``weights`` (1, 1, h, w)."""
    return (features * weights).sum((2, 3)) / weights.sum((2, 3)).clamp(min=_EPS)


def cosine_map(features: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """(1, 1, h, w) cosine similarity of every cell of ``features`` with ``proto``."""
    return F.cosine_similarity(features, proto[:, :, None, None], dim=1)[:, None]


def augment(image: torch.Tensor, mask: torch.Tensor, spec: TTGASpec,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random photometric + affine augmentation of ``image`` (1, 3, S, S) in [0, 1] and
    the same affine map applied to ``mask`` (1, 1, S, S) in [0, 1]."""
    r = torch.rand(7, generator=generator).tolist()
    j = spec.color_jitter
    bright, contrast, saturation = (1 + j * (2 * v - 1) for v in r[:3])
    x = (image * bright).clamp(0, 1)
    grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(
        1, keepdim=True)
    x = ((x - grey.mean()) * contrast + grey.mean()).clamp(0, 1)
    grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(
        1, keepdim=True)
    x = (grey + (x - grey) * saturation).clamp(0, 1)
    angle = math.radians(spec.rotation_deg * (2 * r[3] - 1))
    lo, hi = spec.scale_range
    scale = lo + (hi - lo) * r[4]
    tx, ty = (spec.translate * 2 * (2 * v - 1) for v in r[5:7])  # grid units span 2
    theta = torch.tensor([[math.cos(angle) / scale, -math.sin(angle) / scale, tx],
                          [math.sin(angle) / scale, math.cos(angle) / scale, ty]],
                         dtype=x.dtype, device=x.device)[None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped_mask = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
    return warped, warped_mask


class NeckTuner:
    """Tunes and restores the FPN neck of ``model`` (a SAM 2 model)."""

    def __init__(self, model) -> None:
        self.model = model
        self.neck = model.image_encoder.neck
        self.initial = {k: v.detach().clone() for k, v in self.neck.state_dict().items()}
        self.size = int(model.image_size)

    def restore(self) -> None:
        """The neck's weights as they were when the tuner was made."""
        self.neck.load_state_dict(self.initial)

    @torch.no_grad()
    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.image_encoder.trunk(normalise(x).to(self._device))

    @property
    def _device(self) -> torch.device:
        return next(self.neck.parameters()).device

    def features(self, trunk_out: list[torch.Tensor]) -> torch.Tensor:
        """The neck's ``vision_features`` (1, C, S/16, S/16) from the trunk's maps."""
        feats, _ = self.neck(trunk_out)
        scalp = self.model.image_encoder.scalp
        return (feats[:-scalp] if scalp > 0 else feats)[-1]

    def activation(self, cos: torch.Tensor, spec: TTGASpec) -> torch.Tensor:
        if spec.activation == "sigmoid":
            return torch.sigmoid(cos / spec.temperature)
        return ((1 + cos) / 2).clamp(_EPS, 1 - _EPS)

    def tune(self, image: np.ndarray, mask: np.ndarray, spec: TTGASpec,
             generator: torch.Generator) -> TuneReport:
        """Tune the neck on ``image`` (H, W, 3) uint8 with its ``mask`` (H, W) bool, which
        must have foreground. ``generator`` (CPU) draws the augmentations."""
        device = self._device
        x = to_unit_tensor(image, self.size).to(device)
        m = torch.from_numpy(np.asarray(mask, np.float32))[None, None].to(device)
        m_square = F.interpolate(m, size=(self.size, self.size), mode="bilinear")
        ref_trunk = self.trunk(x)
        params = list(self.neck.parameters())
        optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.steps)
        losses, empty = [], 0
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            try:
                for _ in range(spec.steps):
                    x_aug, m_aug = augment(x, m_square, spec, generator)
                    loss, has_cycle = self._loss(ref_trunk, self.trunk(x_aug), m_square,
                                                 m_aug, spec)
                    empty += not has_cycle
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
            finally:
                for p in params:
                    p.requires_grad_(False)
        return TuneReport(losses[0], losses[-1], empty)

    def _loss(self, ref_trunk, aug_trunk, mask, mask_aug, spec):
        f_ref = self.features(ref_trunk)
        f_aug = self.features(aug_trunk)
        grid = f_ref.shape[-2:]
        w_ref = F.interpolate(mask, size=grid, mode="area")
        w_aug = F.interpolate(mask_aug, size=grid, mode="area")
        cos_aug = cosine_map(f_aug, prototype(f_ref, w_ref))
        loss = F.binary_cross_entropy(self.activation(cos_aug, spec), w_aug)
        found = otsu_mask(cos_aug.detach(), spec.otsu_bins).float()
        if found.sum() == 0:
            return loss, False
        cos_back = cosine_map(f_ref, prototype(f_aug, found))
        return loss + spec.cycle_weight * F.binary_cross_entropy(
            self.activation(cos_back, spec), w_ref), True

    @torch.no_grad()
    def frame_masks(self, reference: np.ndarray, mask: np.ndarray, frames: list[np.ndarray],
                    spec: TTGASpec) -> list[torch.Tensor]:
        """With the current neck: the reference's prototype and, for each frame, the
        Otsu mask (S/16, S/16) bool of its cosine activation."""
        f_ref = self.features(self.trunk(to_unit_tensor(reference, self.size)))
        m = torch.from_numpy(np.asarray(mask, np.float32))[None, None].to(f_ref.device)
        proto = prototype(f_ref, F.interpolate(m, size=f_ref.shape[-2:], mode="area"))
        out = []
        for frame in frames:
            f = self.features(self.trunk(to_unit_tensor(frame, self.size)))
            out.append(otsu_mask(cosine_map(f, proto)[0, 0], spec.otsu_bins))
        return out
