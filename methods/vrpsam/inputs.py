"""Episode arrays -> the tensors VRP-SAM's networks take.

The official loader resizes every image to ``S x S`` (512) with bilinear interpolation and
normalises it with the ImageNet mean and std; labels and support masks are nearest-resized
to ``S x S``. The same normalised tensor feeds the backbone and, stretched to SAM's input
size, SAM's image encoder (SAM's own mean/std are the ImageNet ones times 255, so no
second normalisation is needed; VRP-SAM does not pad like SAM's standard preprocessing).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from refseg_bench.episodes import Annotation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, size, size)`` float32, bilinear (antialiased, as PIL's
    resize in the official transform), ImageNet-normalised."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std)[0]


def label_tensor(label: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W)`` uint8 label (0/1/255) -> ``(size, size)`` uint8, nearest-resized."""
    x = torch.from_numpy(np.ascontiguousarray(label))[None, None].float()
    return F.interpolate(x, size=(size, size), mode="nearest")[0, 0].to(torch.uint8)


def annotation_tensor(annotation: Annotation, size: int) -> torch.Tensor:
    """The support annotation as a ``(size, size)`` float32 0/1 raster.

    Masks, boxes and scribbles are nearest-resized. Points are re-drawn at their scaled
    pixel positions instead, so that no click is lost when a large support is shrunk (the
    official code draws its clicks on the already-resized 512x512 mask).
    """
    raster = annotation.raster
    if annotation.kind == "point" and len(annotation.points):
        h, w = raster.shape
        out = torch.zeros(size, size)
        cols = np.minimum(((annotation.points[:, 0] + 0.5) * size / w).astype(int), size - 1)
        rows = np.minimum(((annotation.points[:, 1] + 0.5) * size / h).astype(int), size - 1)
        out[torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
        return out
    return label_tensor(raster.astype(np.uint8), size).float()


def logits_to_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 1, h, w)`` logits -> ``(B, 1, *size)``, bilinear with aligned corners (the
    official upsampling of SAM's low-resolution masks)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


class EpisodeTensors:
    """A batch of episodes at the encoder's input size ``S``.

    ``query``: ``(B, 3, S, S)``; ``supports``: ``(B, k, 3, S, S)`` (normalised images);
    ``masks``: ``(B, k, S, S)`` float 0/1 annotation rasters; ``sizes``: each query's
    original ``(H, W)``.
    """

    def __init__(self, query: torch.Tensor, supports: torch.Tensor, masks: torch.Tensor,
                 sizes: list[tuple[int, int]]) -> None:
        self.query, self.supports, self.masks, self.sizes = query, supports, masks, sizes

    def to(self, device: torch.device) -> EpisodeTensors:
        return EpisodeTensors(self.query.to(device), self.supports.to(device),
                              self.masks.to(device), self.sizes)


def episode_tensors(episodes, size: int) -> EpisodeTensors:
    """Stack ``Episode`` objects (same shot) into :class:`EpisodeTensors` on the CPU."""
    shots = {e.shot for e in episodes}
    if len(shots) != 1:
        raise ValueError(f"episodes in one batch must share the shot; got shots {sorted(shots)}")
    query = torch.stack([image_tensor(e.query_image, size) for e in episodes])
    supports = torch.stack([torch.stack([image_tensor(im, size) for im in e.support_images])
                            for e in episodes])
    masks = torch.stack([torch.stack([annotation_tensor(a, size) for a in e.annotations])
                         for e in episodes])
    return EpisodeTensors(query, supports, masks, [e.query_size for e in episodes])
