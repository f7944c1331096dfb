"""Episode arrays -> Matcher's inputs, as the official loader and ``Matcher`` make them.

The official loader (``matcher/data/*.py``) resizes every image to 518 x 518 with PIL's
bilinear filter (torchvision ``Resize`` on a PIL image) and ``ToTensor`` (uint8 / 255);
masks are nearest-resized (``F.interpolate(mode="nearest")``). ``Matcher`` then feeds
DINOv2 the ImageNet-normalised tensor and SAM ``img.mul(255).byte()`` of it: the float
round trip truncates, so SAM sees some pixels one level darker than the file. Both are
reproduced here bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 14


def resized_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, size, size)`` float32 in [0, 1]: PIL bilinear resize
    then ``ToTensor``."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                         f"{image.dtype}")
    pil = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.array(pil, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    return x.to(torch.float32).div(255)


def dinov2_input(x: torch.Tensor) -> torch.Tensor:
    """``(3, S, S)`` in [0, 1] -> ImageNet-normalised (torchvision ``Normalize``)."""
    from torchvision.transforms.functional import normalize

    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def sam_image(x: torch.Tensor) -> np.ndarray:
    """``(3, S, S)`` in [0, 1] -> ``(S, S, 3)`` uint8 as ``Matcher.set_target`` makes it."""
    return x.mul(255).byte().permute(1, 2, 0).cpu().numpy()


def resized_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W)`` bool / 0-1 mask -> ``(size, size)`` float32 0/1, nearest-resized."""
    m = torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()
    return F.interpolate(m, (size, size), mode="nearest")[0, 0]


def reference_pool(masks: torch.Tensor) -> torch.Tensor:
    """``(k, S, S)`` 0/1 reference masks -> ``(k * (S/14)^2,)`` float 0/1: the patch cells
    any foreground pixel falls in (average-pooled, > 0), all shots stacked.

    When every shot is empty, a 14 x 14 centre square is set in each (the official
    ``reference_masks_verification``)."""
    masks = masks.clone()
    if masks.sum() == 0:
        s = masks.shape[-1]
        masks[..., s // 2 - 7:s // 2 + 7, s // 2 - 7:s // 2 + 7] = 1
    pooled = F.avg_pool2d(masks[:, None], (PATCH, PATCH))
    return (pooled > 0.0).float().reshape(-1)  # SAM's mask_threshold is 0.0


def output_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(S, S)`` bool prediction -> ``(H, W)`` bool at the query's original size,
    nearest-resized (the protocol scores at 518 again from there). A bool mask is what the
    scorer reads fastest, and its counts are those of the 0/1 float."""
    m = mask.float()[None, None]
    return F.interpolate(m, size=size, mode="nearest")[0, 0] > 0.5
