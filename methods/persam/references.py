"""Reference masks for every annotation kind, and how k references are fused.

PerSAM needs a reference *mask* (its target embedding is pooled over mask cells, and
PerSAM-F trains its weights against that mask). The official code only takes masks; for
the other kinds we first ask SAM itself for the mask, prompting the encoded reference
image with the annotation's geometry, the way a PerSAM user with a weaker annotation
would:

- ``mask``: the annotation raster, as is.
- ``box``: one SAM decode per box (single-mask output, as SAM recommends for boxes), the
  union over boxes. Our boxes have exclusive maxima; SAM's boxes, like the boxes the
  official cascade takes from masks, use the last pixel, so we pass ``x2 - 1, y2 - 1``.
- ``point`` / ``scribble``: the annotation's point prompts (for scribbles, the stroke
  pixels it exposes as points) in one decode: with one point, the best of SAM's three
  masks by predicted IoU; with several, SAM's single-mask output.

If SAM returns an empty mask, the annotation raster is used instead (for a box, the filled
box), so a reference never has an empty foreground.

k-shot (the official code is one-shot): each reference gives its own target embedding
(PerSAM: mean of its foreground features; PerSAM-F: 0.5 max + 0.5 mean), and the k
embeddings are averaged, so every reference weighs the same whatever its object size.
PerSAM-F then fits one pair of mask weights on all k references, averaging their losses.
"""

from __future__ import annotations

import numpy as np
import torch

from refseg_bench.episodes import Annotation
from refseg_bench.methods.persam.sam_ops import ImageState, decode


def _from_boxes(sam, state: ImageState, boxes: np.ndarray) -> np.ndarray:
    out = np.zeros(state.original_size, dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        box = np.array([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)])
        res = decode(sam, state, box=box, multimask_output=False)
        out |= res.masks[0].cpu().numpy()
    return out


def _from_points(sam, state: ImageState, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    single = len(points) == 1
    res = decode(sam, state, points=points, labels=labels, multimask_output=single)
    best = int(torch.argmax(res.scores)) if single else 0
    return res.masks[best].cpu().numpy()


def reference_mask(sam, state: ImageState, annotation: Annotation) -> np.ndarray:
    """(H, W) bool reference mask for ``annotation`` of the image encoded in ``state``."""
    raster = np.asarray(annotation.raster, dtype=bool)
    if raster.shape != state.original_size:
        raise ValueError(f"annotation raster is {raster.shape}, expected the reference "
                         f"image size {state.original_size}")
    if annotation.kind == "mask":
        return raster
    if annotation.kind == "box":
        if len(annotation.boxes) == 0:
            raise ValueError("a box annotation carries no box geometry (boxes is empty)")
        mask = _from_boxes(sam, state, annotation.boxes)
    else:
        if len(annotation.points) == 0:
            raise ValueError(f"a {annotation.kind} annotation carries no point geometry "
                             "(points is empty); PerSAM prompts SAM with its points")
        mask = _from_points(sam, state, annotation.points, annotation.point_labels)
    return mask if mask.any() else raster
