"""Matcher's proposal post-processing gives the generator's numbers: ``_finish`` (IoU
filter before up-sampling, chunked up-sampling into reused buffers, exact counts for the
stability score, masks kept bit-packed, boxes and 37 x 37 grids from the packed bits)
against SAM's own ``postprocess_masks``, ``calculate_stability_score`` and
``batched_mask_to_box`` applied to every mask, as the official generator does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refseg_bench.methods.matcher import proposals


@pytest.fixture(scope="module")
def sam():
    from refseg_bench.models.sam import build_sam

    return build_sam("tiny", None, "cpu", image_size=64)


def _logits(n: int, seed: int) -> torch.Tensor:
    """``(n, 1, 16, 16)`` smooth random logits spanning the stability thresholds, plus an
    all-negative (empty) mask and an all-positive one."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, 4, 4, generator=g) * 6 + torch.linspace(-4, 4, n)[:, None, None,
                                                                               None]
    low = F.interpolate(coarse, (16, 16), mode="bilinear", align_corners=False)
    low = low + 0.3 * torch.randn(low.shape, generator=g)
    low[0] = -5.0
    low[1] = 5.0
    return low


def _reference(sam, low, iou, size, input_size, iou_thresh, stability_thresh):
    """The generator's steps on every mask: up-sample all, filter, threshold, box, grid."""
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

    low, iou = low.flatten(0, 1), iou.flatten(0, 1)
    logits = sam.postprocess_masks(low[:, None], input_size, (size, size))[:, 0]
    keep = iou > iou_thresh if iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
    logits, iou = logits[keep], iou[keep]
    if stability_thresh > 0:
        keep = calculate_stability_score(logits, sam.mask_threshold, 1.0) >= stability_thresh
        logits, iou = logits[keep], iou[keep]
    masks = logits > sam.mask_threshold
    grid = F.max_pool2d(masks[:, None].float(), 14)[:, 0] > 0
    grid[~grid.flatten(1).any(1)] = True
    return masks, iou, batched_mask_to_box(masks), grid


@pytest.mark.parametrize("on_host", [True, False])  # NumPy in chunks / torch, whole batch
@pytest.mark.parametrize("n,iou_thresh,stability_thresh,input_size", [
    (23, 0.5, 0.9, (64, 64)),  # COCO-like filters; 23 masks: a partial last chunk
    (9, 0.0, 0.0, (64, 64)),  # FSS-like: no filter, the empty mask kept
    (14, 0.3, 0.8, (48, 64)),  # a crop of the encoder frame before the second resize
])
def test_finish_equals_the_generator_steps(sam, n, iou_thresh, stability_thresh, input_size,
                                           on_host):
    size = 70  # a 5 x 5 grid of 14-pixel cells
    low = _logits(n, seed=n)
    iou = torch.rand(n, 1, generator=torch.Generator().manual_seed(1))
    iou[:2] = 0.99  # keep the empty and the full mask past the IoU filter
    masks, ref_iou, boxes, grid = _reference(sam, low, iou, size, input_size, iou_thresh,
                                             stability_thresh)
    got = proposals._finish(sam, low, iou, size, input_size, iou_thresh, stability_thresh,
                            on_host)
    assert 0 < len(got) < n or stability_thresh == 0  # the filters kept some, not all
    assert torch.equal(torch.from_numpy(got.masks()), masks)
    assert torch.equal(got.iou, ref_iou) and torch.equal(got.boxes, boxes)
    assert torch.equal(got.grid, grid)


def test_packed_boxes_of_empty_and_edge_masks():
    masks = np.zeros((3, 20, 20), bool)
    masks[1, 3:7, 0:20] = True  # touches both side edges
    masks[2, 19, 11] = True  # one pixel in the last row
    got = proposals.packed_boxes(np.packbits(masks, axis=-1))
    assert got.dtype == torch.int64
    assert got.tolist() == [[0, 0, 0, 0], [0, 3, 19, 6], [11, 19, 11, 19]]
