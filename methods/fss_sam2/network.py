"""FSSAM's forward pass (FSSAM ``model/FSSAM.py`` / ``FSSAM5s.py`` ``OneModel.forward``):
episode tensors in, 512 x 512 mask logits out.

1. PPG: DINOv2 patch features of query and supports at ``dino_size``; FG/BG prototype
   priors of the query (:mod:`.priors`), averaged over shots.
2. Memories (:mod:`.memory`): each support with its mask, the query with ``prior_fg`` and
   with ``prior_ae``.
3. IMR (:mod:`.refine`) of the query "ae" memory at the memory grid.
4. SCMA (:mod:`.scma`) of the query's image features to [supports, refined query memory,
   object pointers]; then the ungated mask decoder (:mod:`.decode`).

SAM 2 and DINOv2 stay whole ``nn.Module`` s of the stock packages; ``FSSAMModel`` holds them
under the official attribute names (``sam2``, ``dino``), so its state dict has the official
checkpoint's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refseg_bench.methods.fss_sam2.decode import decode_ungated
from refseg_bench.methods.fss_sam2.inputs import EpisodeTensors, dino_input, sam2_input
from refseg_bench.methods.fss_sam2.memory import (
    ImageFeatures,
    Memory,
    image_features,
    mask_memory,
    memory_tokens,
    position_encoding,
)
from refseg_bench.methods.fss_sam2.priors import dino_priors
from refseg_bench.methods.fss_sam2.refine import refine_memory
from refseg_bench.methods.fss_sam2.scma import calibrated_memory_attention
from refseg_bench.models.cache import EmbeddingCache, EncoderId

LEARNABLE = ("sam_mask_decoder", "memory_encoder", "memory_attention")  # FSSAM get_optim


@dataclass(frozen=True)
class Stages:
    """The method's switches (see :class:`..settings.FSSAMOptions`)."""

    imr_iterations: int = 3
    imr_version: str = "v1"
    kshot_calibration: str = "all_supports"


class FSSAMModel(nn.Module):
    """SAM 2 (a ``SAM2VideoPredictor``) and DINOv2 under FSSAM's attribute names."""

    def __init__(self, sam2: nn.Module, dino: nn.Module) -> None:
        super().__init__()
        self.sam2, self.dino = sam2, dino

    def learnable_modules(self) -> dict[str, nn.Module]:
        """The modules FSSAM's optimiser holds (``get_optim``)."""
        return {name: getattr(self.sam2, name) for name in LEARNABLE}


class FSSAMNet:
    """The model plus how it is run: the DINOv2 input size, the stage switches and the
    cache of frozen features."""

    def __init__(self, model: FSSAMModel, dino_size: int, stages: Stages | None = None,
                 cache: EmbeddingCache | None = None) -> None:
        self.model, self.dino_size, self.stages = model, dino_size, stages or Stages()
        self.cache = cache if cache is not None else EmbeddingCache()
        self.frozen_id = "initial"  # names the frozen weights in cache keys; see load_weights
        # Support memories by content (image, mask) under ``memory_state`` (the weights);
        # set at evaluation only (``use_memory_cache``): training changes the weights.
        self.memory_cache = None
        self.memory_state = ""
        # Everything outside the optimiser's three modules is frozen (FSSAM leaves SAM 2's
        # loose parameters such as maskmem_tpos_enc trainable but never steps them).
        model.dino.requires_grad_(False)
        for name, p in model.sam2.named_parameters():
            p.requires_grad_(name.split(".")[0] in LEARNABLE)

    @property
    def sam2(self):
        return self.model.sam2

    @property
    def image_size(self) -> int:
        return self.model.sam2.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- frozen encoders (cached by image content when the raw images are given) -------
    def _cached(self, images: list[np.ndarray] | None, x: torch.Tensor, name: str, size: int,
                encode) -> list:
        if images is None:
            return encode(x)
        key = EncoderId(f"fss_sam2/{name}", self.frozen_id, size)
        index = {id(im): i for i, im in enumerate(images)}
        return self.cache.encode_batch(images, key, lambda todo: encode(
            x[[index[id(im)] for im in todo]]))

    @torch.no_grad()
    def sam_features(self, x: torch.Tensor, images=None) -> ImageFeatures:
        """``(N, 3, S, S)`` 0..255 -> SAM 2 features (computed without gradient, as the
        official ``get_image_feature_batch``)."""
        def encode(batch):
            f = image_features(self.sam2, sam2_input(batch))
            return [[m[i] for m in f.maps] for i in range(batch.shape[0])]

        per_image = self._cached(images, x, "sam2", self.image_size, encode)
        maps = [torch.stack([p[j] for p in per_image]).to(x.device) for j in range(3)]
        return ImageFeatures(maps, position_encoding(self.sam2, maps[-1]))

    @torch.no_grad()
    def dino_features(self, x: torch.Tensor, images=None) -> torch.Tensor:
        """``(N, 3, S, S)`` 0..255 -> ``(N, D, g, g)`` normed last-layer DINOv2 patches."""
        def encode(batch):
            return self.model.dino.patch_features(dino_input(batch, self.dino_size), norm=True)

        return torch.stack(list(self._cached(images, x, "dino", self.dino_size, encode))
                           ).to(x.device)

    # --- the forward pass --------------------------------------------------------------
    def logits(self, batch: EpisodeTensors) -> torch.Tensor:
        """Mask logits ``(B, 1, S, S)`` at the network input size."""
        b, k, s = batch.query.shape[0], batch.shot, self.image_size
        supports = batch.supports.flatten(0, 1)
        q_feat = self.sam_features(batch.query, batch.query_images)
        s_feat = self.sam_features(supports, batch.support_images)
        prior_fg, prior_ae = self.priors(batch, supports)
        masks = batch.masks.reshape(b * k, 1, s, s)
        sup_mem = self.support_memory(s_feat, masks, batch.support_images)
        fg_mem, ae_mem = mask_memory(self.sam2, q_feat.cat(q_feat),
                                     torch.cat([prior_fg, prior_ae])).split(b)
        grid = q_feat.sizes[-1]
        small = [F.interpolate(t, size=grid, mode="bilinear", align_corners=True)
                 for t in (masks, prior_fg, prior_ae)]
        ae_feats, _ = refine_memory(sup_mem.feats, small[0], fg_mem.feats, ae_mem.feats,
                                    small[1], small[2], self.stages.imr_iterations,
                                    self.stages.imr_version)
        ae_mem.feats = ae_feats
        return self.attend_and_decode(q_feat, sup_mem, ae_mem, batch.masks, b)

    def use_memory_cache(self, cache) -> None:
        """Keep support memories in ``cache`` (a ``ReferenceCache``; None: off) under the
        current weights: call after loading them, and again after any change."""
        from refseg_bench.models.reference_cache import module_sha256

        self.memory_cache = cache
        learnable = nn.ModuleDict(self.model.learnable_modules())  # frozen: self.frozen_id
        self.memory_state = f"{self.frozen_id}|{module_sha256(learnable)}" if cache else ""

    def support_memory(self, feats: ImageFeatures, masks: torch.Tensor,
                       images: list[np.ndarray] | None) -> Memory:
        """``mask_memory`` of the supports (``masks``: ``(N, 1, S, S)``), from the memory
        cache by image and mask content when it is on and the raw ``images`` are given."""
        if self.memory_cache is None or images is None:
            return mask_memory(self.sam2, feats, masks)
        from refseg_bench.models.cache import image_sha256

        keys = [f"fss_sam2/memory|{self.memory_state}|{image_sha256(im)}|"
                f"{image_sha256(m.cpu().numpy())}" for im, m in zip(images, masks, strict=True)]
        found = self.memory_cache.fill(keys, lambda todo: vars(mask_memory(
            self.sam2, feats.take(todo), masks[todo])))
        return Memory(**{k: torch.cat([f[k] for f in found]) for k in ("feats", "pos",
                                                                         "obj_ptr")})

    def priors(self, batch: EpisodeTensors, supports: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``prior_fg``, ``prior_ae`` ``(B, 1, S, S)`` of the pseudo prompt generator."""
        b, k, s = batch.query.shape[0], batch.shot, self.image_size
        q = self.dino_features(batch.query, batch.query_images)
        sup = self.dino_features(supports, batch.support_images)
        grid = q.shape[-2:]
        masks = F.interpolate(batch.masks.reshape(b * k, 1, s, s), size=grid, mode="bilinear",
                              align_corners=True)
        return dino_priors(q, sup.view(b, k, *sup.shape[1:]), masks.view(b, k, 1, *grid),
                           (s, s))

    def attend_and_decode(self, q_feat: ImageFeatures, sup_mem, qry_mem, masks: torch.Tensor,
                          b: int) -> torch.Tensor:
        """SCMA of the query features to the memory bank, then the ungated decoder.
        ``masks``: ``(B, k, S, S)`` support masks (nearest to the memory grid, as
        official)."""
        memory, memory_pos, num_ptr = memory_tokens(self.sam2, sup_mem, qry_mem, b)
        if self.stages.kshot_calibration == "official":
            masks = masks[:, :1]  # FSSAM5s.py passes only the first support mask
        grid = q_feat.sizes[-1]
        small = F.interpolate(masks, size=grid, mode="nearest")[:, :, None]  # B, s, 1, h, w
        flat, pos = q_feat.flat()
        fused = calibrated_memory_attention(self.sam2.memory_attention, flat[-1], pos,
                                            memory, memory_pos, num_ptr, small)
        fused = fused.permute(1, 2, 0).reshape(b, -1, *grid)
        return decode_ungated(self.sam2, fused, q_feat.high_res)
