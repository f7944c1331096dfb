"""FSSAM's training augmentation (``train.py`` with ``util/transform_new.py``), in torch.

Applied to the query and to every support independently, in this order, on float images
in 0..255 at their original size:

1. ``RandScale``: one factor uniform in ``scale`` for both axes (bilinear; labels nearest);
2. ``RandRotate``: with probability 0.5, an angle uniform in ``rotate`` degrees about the
   image centre (OpenCV ``getRotationMatrix2D`` convention, positive = anticlockwise);
   image bilinear with the ImageNet mean as border, label nearest with 255;
3. ``RandomGaussianBlur``: with probability 0.5, a 5 x 5 Gaussian (sigma 1.1, OpenCV's
   default for that size, reflected borders);
4. ``RandomHorizontalFlip``: with probability 0.5;
5. ``Crop(rand)``: pad to at least ``size`` (mean / 255), then a random ``size`` window,
   redrawn up to 31 times while it keeps under 85 % of the label's foreground pixels.

Randomness comes from the ``numpy.random.Generator`` passed in (seeded per episode by the
caller), never from global state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from refseg_bench.methods.fss_sam2.inputs import IMAGENET_MEAN

MEAN_255 = tuple(255 * m for m in IMAGENET_MEAN)
IGNORE = 255
BLUR_SIGMA = 1.1  # OpenCV: 0.3 * ((5 - 1) * 0.5 - 1) + 0.8
CROP_KEEP, CROP_RETRIES = 0.85, 31  # transform_new.Crop: while ... and crop_cnt <= 30


def _mean(like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor(MEAN_255).view(3, 1, 1)


def rand_scale(image, label, factor: float):
    """``image`` ``(3, H, W)`` float, ``label`` ``(H, W)`` uint8, scaled by ``factor``."""
    h, w = label.shape
    size = (max(round(h * factor), 1), max(round(w * factor), 1))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0]
    return image, label.to(torch.uint8)


def rotate(image, label, degrees: float):
    """Rotation about ``(w/2, h/2)`` keeping the size, borders filled as OpenCV's
    ``warpAffine`` with ``BORDER_CONSTANT``."""
    h, w = label.shape
    a = math.radians(degrees)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    cx, cy = w / 2, h / 2
    # inverse map of getRotationMatrix2D(centre, angle, 1): destination -> source pixel
    sx = math.cos(a) * (xs - cx) - math.sin(a) * (ys - cy) + cx
    sy = math.sin(a) * (xs - cx) + math.cos(a) * (ys - cy) + cy
    grid = torch.stack([2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1], -1)[None]
    mean = _mean(image)
    image = F.grid_sample((image - mean)[None], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=True)[0] + mean
    shifted = label.float() - IGNORE
    label = F.grid_sample(shifted[None, None], grid, mode="nearest", padding_mode="zeros",
                          align_corners=True)[0, 0] + IGNORE
    return image, label.round().to(torch.uint8)


def gaussian_blur(image):
    """5 x 5 Gaussian blur with reflected borders (OpenCV's default ``BORDER_REFLECT_101``)."""
    x = torch.arange(5, dtype=image.dtype) - 2
    k = torch.exp(-x ** 2 / (2 * BLUR_SIGMA ** 2))
    k = k / k.sum()
    out = F.pad(image[None], (2, 2, 2, 2), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, 5).expand(3, 1, 1, 5), groups=3)
    return F.conv2d(out, k.view(1, 1, 5, 1).expand(3, 1, 5, 1), groups=3)[0]


def crop(image, label, size: int, rng: np.random.Generator):
    """Pad (centred) to at least ``size`` then a random ``size x size`` window, redrawn
    while it keeps under 85 % of the foreground (at most 31 redraws)."""
    h, w = label.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        image = F.pad(image - _mean(image), pad) + _mean(image)
        label = F.pad(label, pad, value=IGNORE)
        h, w = label.shape
    total = int((label == 1).sum())
    for attempt in range(CROP_RETRIES + 1):
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        window = label[y:y + size, x:x + size]
        if int((window == 1).sum()) >= CROP_KEEP * total or attempt == CROP_RETRIES:
            return image[:, y:y + size, x:x + size], window


def augment(image: torch.Tensor, label: torch.Tensor, size: int, rng: np.random.Generator,
            scale: tuple[float, float] = (0.9, 1.1), angles: tuple[float, float] = (-10, 10)
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole chain: ``image`` ``(3, H, W)`` float 0..255 and ``label`` ``(H, W)`` uint8
    0/1/255 -> ``(3, size, size)`` and ``(size, size)``."""
    image, label = rand_scale(image, label, float(rng.uniform(*scale)))
    if rng.random() < 0.5:
        image, label = rotate(image, label, float(rng.uniform(*angles)))
    if rng.random() < 0.5:
        image = gaussian_blur(image)
    if rng.random() < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    return crop(image, label, size, rng)
