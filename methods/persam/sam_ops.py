"""SAM calls PerSAM needs: an encoded image and one prompted decode, at original size.

This is the part of segment-anything's ``SamPredictor`` that PerSAM uses (prompt
coordinates mapped to the resized frame, mask logits post-processed to the original
size), written against a built ``Sam`` so the decoder can be the guided one
(:mod:`.guidance`) and the image embedding can come from a cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from refseg_bench.methods.persam.guidance import guided_decode


@dataclass
class ImageState:
    """One encoded image.

    ``features``: (1, C, h, w) float32 SAM image embedding (h = w = S/16);
    ``input_size``: (h', w') of the image after resizing its longest side to S;
    ``original_size``: (H, W) of the image as given.
    """

    features: Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


@dataclass
class Decoded:
    """One decode: ``low_res`` (M, 4h, 4w) and ``high_res`` (M, H, W) float32 mask logits,
    ``scores`` (M,) predicted IoUs, on the model's device (M = 1 or 3)."""

    low_res: Tensor
    high_res: Tensor
    scores: Tensor

    @property
    def masks(self) -> Tensor:
        """(M, H, W) bool: SAM's threshold (logit > 0) at original size."""
        return self.high_res > 0.0


def image_state(sam, features: Tensor, original_size: tuple[int, int]) -> ImageState:
    """Wrap an embedding (1, C, h, w) of an image of ``original_size`` (H, W)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    h, w = original_size
    input_size = ResizeLongestSide.get_preprocess_shape(h, w, sam.image_encoder.img_size)
    return ImageState(features, tuple(int(s) for s in input_size), (int(h), int(w)))


def upsample_to_image(sam, low: Tensor, state: ImageState) -> Tensor:
    """SAM's ``postprocess_masks``: (B, M, a, b) maps -> (B, M, H, W) at original size."""
    return sam.postprocess_masks(low, state.input_size, state.original_size)


def _prompts(sam, state: ImageState, points, labels, box):
    from segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(sam.image_encoder.img_size)
    point_arg = box_arg = None
    if points is not None:
        coords = transform.apply_coords(np.asarray(points), state.original_size)
        coords = torch.as_tensor(coords, dtype=torch.float, device=sam.device)[None]
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.int, device=sam.device)[None]
        point_arg = (coords, lab)
    if box is not None:
        b = transform.apply_boxes(np.asarray(box).reshape(1, 4), state.original_size)
        box_arg = torch.as_tensor(b, dtype=torch.float, device=sam.device)[None]
    return point_arg, box_arg


@torch.no_grad()
def decode(
    sam,
    state: ImageState,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: Tensor | None = None,
    multimask_output: bool = True,
    attn_sim: Tensor | None = None,
    target_embedding: Tensor | None = None,
) -> Decoded:
    """Prompt SAM on an encoded image, as ``SamPredictor.predict`` does.

    ``points``: (N, 2) pixel ``(x, y)`` at original size; ``labels``: (N,) 1 = positive,
    0 = negative; ``box``: (4,) XYXY pixels at original size; ``mask_input``: (1, 4h, 4w)
    low-resolution logits from an earlier decode. ``attn_sim`` / ``target_embedding``: the
    PerSAM guidances (see :mod:`.guidance`); None runs the stock decoder math.
    """
    point_arg, box_arg = _prompts(sam, state, points, labels, box)
    masks_arg = None if mask_input is None else mask_input.to(sam.device, torch.float)[None]
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=masks_arg)
    low, scores = guided_decode(
        sam.mask_decoder, state.features, sam.prompt_encoder.get_dense_pe(), sparse, dense,
        multimask_output, attn_sim=attn_sim, target_embedding=target_embedding,
    )
    high = upsample_to_image(sam, low, state)
    return Decoded(low[0], high[0], scores[0])


def box_of(mask: Tensor | np.ndarray) -> np.ndarray | None:
    """Tight box (4,) int64 ``[x_min, y_min, x_max, y_max]`` with *inclusive* maxima, as the
    official cascade builds it from a mask (H, W); None for an empty mask."""
    m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    ys, xs = np.nonzero(m)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()])
