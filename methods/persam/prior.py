"""PerSAM's location prior: target embedding, location confidence map, point prompts and
the target-guided attention map (Personalize-SAM: ``persam.py``, ``persam_f.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from refseg_bench.methods.persam.sam_ops import ImageState, upsample_to_image

# PerSeg annotations are palette PNGs whose foreground reads as RGB (128, 0, 0); the
# official code feeds that RGB image through SAM's *image* preprocessing (normalise with
# the pixel mean/std, pad) and keeps the feature cells whose red channel is > 0 after a
# bilinear resize to the feature grid. The foreground value thus sets the threshold.
PERSEG_FOREGROUND = 128


def reference_cells(sam, mask: np.ndarray, grid: tuple[int, int],
                    foreground_value: int = PERSEG_FOREGROUND) -> Tensor:
    """Feature cells (h, w) bool that select the target's features.

    ``mask``: (H, W) bool at the reference image's size. As the official code: the mask
    is drawn as RGB ``(v, 0, 0)``, resized and normalised like an image, zero-padded,
    bilinearly resized to ``grid`` and thresholded at > 0 on the red channel. If that keeps
    no cell (a target smaller than about one cell, where the official code would average
    an empty set), the cells with the largest covered fraction are used instead.
    """
    from refseg_bench.models.sam import sam_input

    mask = np.asarray(mask, dtype=bool)
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[..., 0] = mask * np.uint8(foreground_value)
    x = sam_input(sam, rgb)
    cells = F.interpolate(x, size=grid, mode="bilinear")[0, 0] > 0
    if cells.any():
        return cells
    return _largest_coverage(sam, mask, grid)


def _largest_coverage(sam, mask: np.ndarray, grid: tuple[int, int]) -> Tensor:
    from segment_anything.utils.transforms import ResizeLongestSide

    size = sam.image_encoder.img_size
    h, w = ResizeLongestSide.get_preprocess_shape(mask.shape[0], mask.shape[1], size)
    m = torch.as_tensor(mask, dtype=torch.float32, device=sam.device)[None, None]
    m = F.interpolate(m, size=(h, w), mode="area")
    m = F.pad(m, (0, size - w, 0, size - h))
    frac = F.adaptive_avg_pool2d(m, grid)[0, 0]
    return frac == frac.max()


def foreground_features(features: Tensor, cells: Tensor) -> Tensor:
    """Features (n, C) of the selected cells; ``features``: (1, C, h, w), ``cells``: (h, w)."""
    return features[0].permute(1, 2, 0)[cells]


def mean_embedding(fg: Tensor) -> Tensor:
    """PerSAM's target embedding (C,): the mean of the foreground features (n, C)."""
    return fg.mean(0)


def max_mean_embedding(fg: Tensor) -> Tensor:
    """PerSAM-F's target embedding (C,): 0.5 * channel-wise max + 0.5 * mean."""
    return fg.max(dim=0)[0] / 2 + fg.mean(0) / 2


def confidence_map(sam, state: ImageState, embedding: Tensor) -> Tensor:
    """Location confidence (H, W) float32 at the image's original size.

    Cosine similarity between ``embedding`` (C,) and every feature of ``state``, upsampled
    x4 (bilinear) to the low-resolution mask grid, then SAM's mask post-processing.
    """
    target = embedding[None] / embedding.norm(dim=-1, keepdim=True)
    feat = state.features[0]
    c, h, w = feat.shape
    feat = feat / feat.norm(dim=0, keepdim=True)
    sim = (target @ feat.reshape(c, h * w)).reshape(1, 1, h, w)
    sim = F.interpolate(sim, scale_factor=4, mode="bilinear")
    return upsample_to_image(sam, sim, state)[0, 0]


def _flat_to_xy(index: Tensor, width: int) -> np.ndarray:
    row = index // width
    col = index - row * width
    return torch.stack((col, row), dim=-1).cpu().numpy()


def select_points(conf: Tensor, negative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts from a confidence map (H, W).

    Returns ``points`` (N, 2) int64 pixel ``(x, y)`` and ``labels`` (N,) int64: the
    highest-confidence pixel (label 1) and, if ``negative``, the lowest (label 0). Ties go
    to the first pixel in row-major order, via the same ``topk`` the official code uses.
    """
    flat = conf.flatten()
    width = conf.shape[1]
    points = [_flat_to_xy(flat.topk(1)[1], width)]
    labels = [np.array([1])]
    if negative:
        points.append(_flat_to_xy(flat.topk(1, largest=False)[1], width))
        labels.append(np.array([0]))
    return np.concatenate(points, axis=0), np.concatenate(labels, axis=0)


def attention_guidance(conf: Tensor, grid: tuple[int, int]) -> Tensor:
    """Target-guided attention bias (1, 1, 1, h*w): the confidence map z-scored (unbiased
    std), bilinearly resized to the image-embedding grid (64 x 64 for SAM at 1024) and
    passed through a sigmoid."""
    z = (conf - conf.mean()) / torch.std(conf)
    z = F.interpolate(z[None, None], size=grid, mode="bilinear")
    return z.sigmoid()[None].flatten(3)
