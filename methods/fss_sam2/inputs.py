"""Episode arrays -> the tensors FSSAM's network takes, as its evaluation loader makes them.

The official test transform (``util/transform_new.py`` ``Resize``, on float32 images)
resizes every image straight to ``S x S`` (512) with bilinear interpolation (OpenCV
``INTER_LINEAR``: half-pixel centres, no anti-aliasing) and keeps values in 0..255; labels
and support masks are nearest-resized. Void pixels (255) of a support mask count as
background (``s_mask[s_mask == 255] = 0``). SAM 2 and DINOv2 normalise the same 0..255
tensor themselves (:func:`sam2_input`, :func:`dino_input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, size, size)`` float32 in 0..255 (bilinear, no
    anti-aliasing, no rounding: the official loader resizes float32 arrays)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]


def label_tensor(label: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W)`` uint8 label (0/1/255) or bool mask -> ``(size, size)`` uint8, nearest."""
    x = torch.from_numpy(np.ascontiguousarray(label).astype(np.uint8))[None, None].float()
    return F.interpolate(x, size=(size, size), mode="nearest")[0, 0].to(torch.uint8)


def foreground(label: torch.Tensor) -> torch.Tensor:
    """uint8 0/1/255 label -> float 0/1 mask; void (255) counts as background."""
    return (label == 1).float()


def normalised(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` 0..255 -> ImageNet-normalised, in the official order (mean and
    std scaled by 255)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def sam2_input(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` 0..255 -> SAM 2's input (FSSAM ``load_video_frames_from_data``:
    divide by 255, subtract the mean, divide by the std)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def dino_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 3, S, S)`` 0..255 -> DINOv2's input: bilinear to ``size`` with aligned corners,
    then normalised (the order of the official forward)."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    return normalised(x)


@dataclass
class EpisodeTensors:
    """A batch of episodes at the network's input size ``S``.

    ``query``: ``(B, 3, S, S)`` and ``supports``: ``(B, k, 3, S, S)``, float32 0..255;
    ``masks``: ``(B, k, S, S)`` float32 0/1 support masks; ``sizes``: each query's original
    ``(H, W)``. ``query_images`` / ``support_images`` (the raw arrays, flat in episode
    order) key the feature cache; None during augmented training.
    """

    query: torch.Tensor
    supports: torch.Tensor
    masks: torch.Tensor
    sizes: list[tuple[int, int]]
    query_images: list[np.ndarray] | None = None
    support_images: list[np.ndarray] | None = None

    @property
    def shot(self) -> int:
        return self.supports.shape[1]

    def to(self, device: torch.device) -> EpisodeTensors:
        return EpisodeTensors(self.query.to(device), self.supports.to(device),
                              self.masks.to(device), self.sizes, self.query_images,
                              self.support_images)


def stack_images(episodes, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries ``(B, 3, S, S)`` and supports ``(B, k, 3, S, S)`` of episodes sharing a shot."""
    shots = {e.shot for e in episodes}
    if len(shots) != 1:
        raise ValueError(f"episodes in one batch must share the shot; got shots {sorted(shots)}")
    query = torch.stack([image_tensor(e.query_image, size) for e in episodes])
    supports = torch.stack([torch.stack([image_tensor(im, size) for im in e.support_images])
                            for e in episodes])
    return query, supports
