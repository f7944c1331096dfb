"""Support masks for weak references (box, point, scribble), where no support label exists.

FSSAM reads a full support mask three times: for the DINOv2 prototypes, for the support
memory and for the calibration prototype. Without a label the adapter makes one mask per
support and uses it in all three places:

- ``sam2`` (default): SAM 2's prediction on the support image for the annotation's box or
  points (scribbles expose stroke pixels as points), as on a conditioning frame of its
  video predictor (:func:`.decode.prompted_masks`). If SAM 2 predicts nothing (its object
  score gate), the annotation raster is used for that support and counted.
- ``raster``: the annotation raster itself, nearest-resized: the filled box (the
  ``ann_type=bbox`` convention of the PFENet/BAM loaders FSSAM inherits), or the clicked
  pixels and strokes.
"""

from __future__ import annotations

import torch

from refseg_bench.methods.fss_sam2.decode import prompted_masks
from refseg_bench.methods.fss_sam2.inputs import EpisodeTensors, label_tensor

WEAK_SUPPORTS = ("sam2", "raster")


def raster_masks(episodes, size: int) -> torch.Tensor:
    """``(B, k, size, size)`` float 0/1: every support's annotation raster."""
    return torch.stack([torch.stack([label_tensor(a.raster, size).float()
                                     for a in e.annotations]) for e in episodes])


def support_masks(net, tensors: EpisodeTensors, episodes, mode: str, counts: dict
                  ) -> torch.Tensor:
    """``(B, k, S, S)`` support masks on the network's device for episodes without
    labels; ``counts`` (``sam2``, ``raster_fallback``, ``raster``) is updated per support."""
    if mode not in WEAK_SUPPORTS:
        raise ValueError(f"weak_support must be one of {WEAK_SUPPORTS}; got {mode!r}")
    s = net.image_size
    rasters = raster_masks(episodes, s).to(net.device)
    if mode == "raster":
        counts["raster"] += rasters.shape[0] * rasters.shape[1]
        return rasters
    b, k = rasters.shape[:2]
    feats = net.sam_features(tensors.supports.flatten(0, 1), tensors.support_images)
    annotations = [a for e in episodes for a in e.annotations]
    sizes = [im.shape[:2] for e in episodes for im in e.support_images]
    predicted = prompted_masks(net.sam2, feats, annotations, sizes).view(b, k, s, s).float()
    empty = predicted.flatten(2).amax(-1) == 0  # B, k
    counts["sam2"] += int((~empty).sum())
    counts["raster_fallback"] += int(empty.sum())
    return torch.where(empty[..., None, None], rasters, predicted)
