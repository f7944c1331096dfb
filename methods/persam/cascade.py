"""PerSAM and PerSAM-F inference on one target image: location prior -> point prompts ->
(guided) first decode -> two cascaded refinements (Personalize-SAM: ``persam.py``,
``persam_f.py``, test loops).

Where the official code would fail (a refinement step whose mask is empty, so no box can
be taken from it) we stop the cascade and return that empty mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from refseg_bench.methods.persam.prior import attention_guidance, confidence_map, select_points
from refseg_bench.methods.persam.sam_ops import Decoded, ImageState, box_of, decode


@dataclass
class Segmentation:
    """Result on one target: ``mask`` (H, W) bool, the point prompts used (``points``
    (N, 2) pixel ``(x, y)``, ``labels`` (N,)), and ``logits`` (H, W) float32: the
    high-resolution logits of the mask returned (mask = logits > 0)."""

    mask: Tensor
    logits: Tensor
    points: np.ndarray
    labels: np.ndarray


def _best(out: Decoded) -> int:
    return int(torch.argmax(out.scores))


def _refine_with_box(sam, state: ImageState, points, labels, mask: Tensor,
                     mask_input: Tensor) -> Decoded | None:
    """One box refinement: points + the box of ``mask`` + ``mask_input`` (1, 4h, 4w);
    None when ``mask`` is empty."""
    box = box_of(mask)
    if box is None:
        return None
    return decode(sam, state, points, labels, box=box, mask_input=mask_input,
                  multimask_output=True)


def _last_refinement(sam, state: ImageState, points: Tensor, labels: Tensor,
                     step1: Decoded) -> Segmentation:
    """The second refinement both methods end with: the points + the box of ``step1``'s
    best mask + its low-res logits; the best of three, or ``step1``'s best when its mask
    is empty (no box)."""
    i = _best(step1)
    step2 = _refine_with_box(sam, state, points, labels, step1.masks[i],
                             step1.low_res[i:i + 1])
    if step2 is None:
        return Segmentation(step1.masks[i], step1.high_res[i], points, labels)
    j = _best(step2)
    return Segmentation(step2.masks[j], step2.high_res[j], points, labels)


def persam_segment(sam, state: ImageState, target: Tensor) -> Segmentation:
    """PerSAM on one encoded target image; ``target`` (C,) is the raw target embedding.

    First decode: positive + negative point, target-guided attention and target-semantic
    prompting, one mask. Refinement 1: same points + its low-res logits as mask input,
    three masks, best predicted IoU. Refinement 2: adds the box of that mask, best of three.
    """
    conf = confidence_map(sam, state, target)
    points, labels = select_points(conf, negative=True)
    attn_sim = attention_guidance(conf, tuple(state.features.shape[-2:]))
    first = decode(sam, state, points, labels, multimask_output=False, attn_sim=attn_sim,
                   target_embedding=target[None, None])
    step1 = decode(sam, state, points, labels, mask_input=first.low_res[0:1],
                   multimask_output=True)
    return _last_refinement(sam, state, points, labels, step1)


def weighted_logits(logits: Tensor, weights: Tensor) -> Tensor:
    """PerSAM-F's fusion of the three multimask logits: ``logits`` (3, ...) weighted by
    ``weights`` (3,) and summed over the first axis."""
    w = weights.reshape(-1, *([1] * (logits.dim() - 1)))
    return (logits * w).sum(0)


def persam_f_segment(sam, state: ImageState, target: Tensor, weights: Tensor) -> Segmentation:
    """PerSAM-F on one encoded target image.

    ``target`` (C,): the 0.5 max + 0.5 mean embedding; ``weights`` (3,): the fitted mask
    weights. One positive point, no guidance; three masks fused with ``weights``.
    Refinement 1: point + box of the fused mask + fused low-res logits. Refinement 2: point
    + box of the best mask + its logits. Each refinement keeps the best predicted IoU.
    """
    conf = confidence_map(sam, state, target)
    points, labels = select_points(conf, negative=False)
    first = decode(sam, state, points, labels, multimask_output=True)
    w = weights.to(first.high_res.device, first.high_res.dtype)
    fused_high = weighted_logits(first.high_res, w)
    fused_low = weighted_logits(first.low_res, w)
    step1 = _refine_with_box(sam, state, points, labels, fused_high > 0, fused_low[None])
    if step1 is None:
        return Segmentation(fused_high > 0, fused_high, points, labels)
    return _last_refinement(sam, state, points, labels, step1)
