"""SAM 2 image features and memories as FSSAM builds them, over the stock ``sam2`` modules.

- :func:`image_features`: the image encoder plus the decoder's high-resolution projections
  (``SAM2Base.forward_image`` and ``_prepare_backbone_features``, as FSSAM's
  ``get_image_feature_batch``).
- :func:`mask_memory`: a mask turned into a memory (FSSAM ``add_new_mask_batch``): the
  stock ``_use_mask_as_output`` (mask x 20 - 10 as logits, object pointer from the mask
  decoder prompted with the downsampled mask) and ``_encode_new_memory``. The official
  function runs under ``torch.inference_mode``, so no gradient reaches the memory encoder
  (or the decoder through the pointer) during training; here it runs under ``no_grad``.
- :func:`memory_tokens`: the cross-attention input of the calibrated memory attention
  (FSSAM ``propagate_in_video_batch_final``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageFeatures:
    """SAM 2 features of ``N`` images: ``maps`` are the three ``(N, C_i, h_i, w_i)`` levels
    (strides 4, 8, 16; the first two already projected by ``conv_s0``/``conv_s1``) and
    ``pos`` the sine position encoding of the last level, ``(N, C, h, w)`` (the only one
    the memory attention reads; the larger levels' encodings are never used)."""

    maps: list[torch.Tensor]
    pos: torch.Tensor

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [tuple(m.shape[-2:]) for m in self.maps]

    def flat(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """SAM 2's flattened layout: the maps as a list of ``(h*w, N, C)`` and the last
        level's position encoding ``(h*w, N, C)``."""
        return ([m.flatten(2).permute(2, 0, 1) for m in self.maps],
                self.pos.flatten(2).permute(2, 0, 1))

    @property
    def pix_feat(self) -> torch.Tensor:
        return self.maps[-1]

    @property
    def high_res(self) -> list[torch.Tensor]:
        return self.maps[:-1]

    def take(self, rows: list[int]) -> ImageFeatures:
        """The features of images ``rows``."""
        return ImageFeatures([m[rows] for m in self.maps], self.pos[rows])

    def cat(self, other: ImageFeatures) -> ImageFeatures:
        return ImageFeatures([torch.cat(p) for p in zip(self.maps, other.maps, strict=True)],
                             torch.cat([self.pos, other.pos]))


def image_features(sam2, x: torch.Tensor) -> ImageFeatures:
    """``(N, 3, S, S)`` SAM 2 input (normalised) -> :class:`ImageFeatures`."""
    out = sam2.forward_image(x)
    levels = sam2.num_feature_levels
    return ImageFeatures(list(out["backbone_fpn"][-levels:]), out["vision_pos_enc"][-1])


def position_encoding(sam2, pix_feat: torch.Tensor) -> torch.Tensor:
    """The neck's sine position encoding for the last-level features ``pix_feat`` (it
    depends on the size only, so cached features need not store it)."""
    return sam2.image_encoder.neck.position_encoding(pix_feat).to(pix_feat.dtype)


@dataclass
class Memory:
    """Memories of ``N`` frames: ``feats`` and ``pos`` ``(N, 64, h, w)``, ``obj_ptr``
    ``(N, 256)``."""

    feats: torch.Tensor
    pos: torch.Tensor
    obj_ptr: torch.Tensor

    def split(self, n: int) -> tuple[Memory, Memory]:
        return (Memory(self.feats[:n], self.pos[:n], self.obj_ptr[:n]),
                Memory(self.feats[n:], self.pos[n:], self.obj_ptr[n:]))


@torch.no_grad()
def mask_memory(sam2, feats: ImageFeatures, masks: torch.Tensor) -> Memory:
    """Memories of images with ``masks`` ``(N, 1, S, S)`` in [0, 1] (a binary support mask
    or a soft prior), as FSSAM's ``add_new_mask_batch``."""
    out = sam2._use_mask_as_output(feats.pix_feat, feats.high_res, masks)
    high_res_masks, obj_ptr, object_score_logits = out[4], out[5], out[6]
    flat, _ = feats.flat()
    mem, pos = sam2._encode_new_memory(current_vision_feats=flat, feat_sizes=feats.sizes,
                                       pred_masks_high_res=high_res_masks,
                                       object_score_logits=object_score_logits,
                                       is_mask_from_pts=False)
    return Memory(mem, pos[-1], obj_ptr)


def memory_tokens(sam2, supports: Memory, query: Memory, batch: int
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The memory bank of FSSAM's attention, seq-first ``(L, B, 64)`` with its position
    encoding and the number of object-pointer tokens.

    Order: the ``k`` support memories of each episode (``supports`` episode-major,
    ``B*k``), the query memory, then the ``k + 1`` object pointers split into
    ``256 / 64 = 4`` tokens each. Every memory frame gets the same temporal encoding
    ``maskmem_tpos_enc[num_maskmem - 1]`` (all are "conditioning frames at distance 0");
    pointer tokens get a zero position encoding (``add_tpos_enc_to_obj_ptrs`` is off).
    """
    k = supports.feats.shape[0] // batch
    frames = [(supports.feats.view(batch, k, *supports.feats.shape[1:])[:, i],
               supports.pos.view(batch, k, *supports.pos.shape[1:])[:, i]) for i in range(k)]
    frames.append((query.feats, query.pos))
    tpos = sam2.maskmem_tpos_enc[sam2.num_maskmem - 1]
    mem = [f.flatten(2).permute(2, 0, 1) for f, _ in frames]
    pos = [p.flatten(2).permute(2, 0, 1) + tpos for _, p in frames]
    ptrs = torch.cat([supports.obj_ptr.view(batch, k, -1).transpose(0, 1),
                      query.obj_ptr[None]], dim=0)  # (k+1), B, C
    c, d = ptrs.shape[-1], sam2.mem_dim
    if d < c:  # split each pointer into C/d tokens of width d
        ptrs = ptrs.reshape(k + 1, batch, c // d, d).permute(0, 2, 1, 3).flatten(0, 1)
    mem.append(ptrs)
    pos.append(ptrs.new_zeros(ptrs.shape))
    return torch.cat(mem, 0), torch.cat(pos, 0), ptrs.shape[0]
