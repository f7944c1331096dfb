"""Mask proposals: the official modified ``SamAutomaticMaskGenerator`` (Matcher's
``segment_anything/automatic_mask_generator.py``), same numbers, less work.

The official generator decodes the dense 64 x 64 point grid (COCO / LVIS) and every
sampled prompt set in batches of ``points_per_batch``, up-samples *all* logits to the
image, filters by predicted IoU and stability, run-length encodes the survivors, merges
them (deep-copying every RLE on each merge), runs box NMS and decodes the RLEs again. Here:

- decoder calls keep the official batches (the same prompts in the same batch give the
  same bits; a different batch size may not);
- the IoU filter runs *before* up-sampling, so only survivors are up-sampled (each mask's
  up-sampling is independent of the others in its batch);
- masks stay as bit-packed arrays (no RLE round trip: it is the identity);
- the dense-grid proposals depend on the image alone and are cached across episodes;
- the crop-edge filter is skipped: with one crop equal to the image it never removes a box.

One image is one crop (``crop_n_layers = 0``); the image is ``S x S`` (518).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from refseg_bench.methods.matcher.settings import Setting


@dataclass
class Proposals:
    """``n`` binary masks of an ``S x S`` image.

    ``packed``: ``(n, S, ceil(S/8))`` uint8 (``np.packbits`` along x); ``iou``: ``(n,)``
    float32 predicted IoU; ``boxes``: ``(n, 4)`` XYXY int (``batched_mask_to_box``);
    ``grid``: ``(n, g, g)`` bool, the official 37 x 37 mask (``g = S / 14``): cells with any
    foreground pixel (``cv2.resize(INTER_AREA) > 0`` of a 0/1 mask at the integer factor 14),
    every cell for an empty mask."""

    packed: np.ndarray
    iou: torch.Tensor
    boxes: torch.Tensor
    grid: torch.Tensor

    @classmethod
    def empty(cls, size: int, grid: int) -> Proposals:
        return cls(np.zeros((0, size, (size + 7) // 8), np.uint8), torch.zeros(0),
                   torch.zeros(0, 4, dtype=torch.int64),
                   torch.zeros(0, grid, grid, dtype=torch.bool))

    def __len__(self) -> int:
        return len(self.iou)

    @classmethod
    def cat(cls, parts: list[Proposals]) -> Proposals:
        return cls(np.concatenate([p.packed for p in parts]), torch.cat([p.iou for p in parts]),
                   torch.cat([p.boxes for p in parts]), torch.cat([p.grid for p in parts]))

    def take(self, idx: torch.Tensor) -> Proposals:
        i = idx.cpu()
        return Proposals(self.packed[i.numpy()], self.iou[i], self.boxes[i], self.grid[i])

    def masks(self, idx: torch.Tensor | None = None) -> np.ndarray:
        """``(m, S, S)`` bool masks (all, or those at ``idx``)."""
        packed = self.packed if idx is None else self.packed[idx.cpu().numpy()]
        return np.unpackbits(packed, axis=-1, count=packed.shape[1]).astype(bool)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``(n, p)`` bool: whether each mask covers each ``(x, y)`` pixel of ``points``
        (clipped to the image, as the official ``is_in_mask``)."""
        s = self.packed.shape[1]
        pts = np.clip(points.astype(int)[:, ::-1], 0, [s - 1, s - 1])
        y, x = pts[:, 0], pts[:, 1]
        return ((self.packed[:, y, x // 8] >> (7 - x % 8)) & 1).astype(bool)

    def nbytes(self) -> int:
        return self.packed.nbytes + self.grid.numel() + 4 * len(self.iou) + 8 * self.boxes.numel()


def _select_layers(masks, iou, multimask: bool, layer: int):
    """The generator's output-layer choice (``output_layer`` / ``sel_output_layer``)."""
    if multimask:
        if layer in (0, 1, 2):
            return masks[:, layer][:, None], iou[:, layer][:, None]
        if layer in (3, 4, 5):
            return masks[:, layer - 3:], iou[:, layer - 3:]
    return masks, iou


def _finish(sam, low: torch.Tensor, iou: torch.Tensor, size: int, input_size, iou_thresh: float,
            stability_thresh: float, grid: int) -> Proposals:
    """Filter ``(b, m, h, w)`` low-res logits / ``(b, m)`` IoUs as one generator batch:
    IoU filter, up-sampling, stability filter (offset 1.0), threshold at 0."""
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

    low, iou = low.flatten(0, 1), iou.flatten(0, 1)
    if iou_thresh > 0.0:
        keep = iou > iou_thresh
        low, iou = low[keep], iou[keep]
    if len(iou) == 0:
        return Proposals.empty(size, grid)
    logits = sam.postprocess_masks(low[:, None], input_size, (size, size))[:, 0]
    if stability_thresh > 0.0:
        keep = calculate_stability_score(logits, sam.mask_threshold, 1.0) >= stability_thresh
        logits, iou = logits[keep], iou[keep]
    masks = logits > sam.mask_threshold
    del logits
    boxes = batched_mask_to_box(masks)
    cells = torch.nn.functional.max_pool2d(masks[:, None].float(), size // grid)[:, 0] > 0
    # The official cv2 area resize of an empty mask is all 0 and its threshold becomes
    # max - 1e-6: every cell counts.
    cells[~cells.flatten(1).any(1)] = True
    packed = np.packbits(masks.cpu().numpy(), axis=-1)
    return Proposals(packed, iou.cpu(), boxes.cpu(), cells.cpu())


def _decode(sam, features, points, labels, boxes, multimask: bool):
    sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=boxes, masks=None)
    return sam.mask_decoder(image_embeddings=features, image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask)


@torch.no_grad()
def dense_proposals(sam, features: torch.Tensor, s: Setting) -> Proposals:
    """Masks of the ``points_per_side``^2 point grid (single prompt each), filtered by
    ``pred_iou_thresh`` and ``stability_score_thresh``; image-only work."""
    from segment_anything.utils.amg import build_all_layer_point_grids
    from segment_anything.utils.transforms import ResizeLongestSide

    size, grid = s.img_size, s.img_size // 14
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    input_size = transform.get_preprocess_shape(size, size, sam.image_encoder.img_size)
    points = build_all_layer_point_grids(s.points_per_side, 0, 1)[0] * np.array([[size, size]])
    parts = []
    for i in range(0, len(points), s.points_per_batch):
        pts = torch.as_tensor(transform.apply_coords(points[i:i + s.points_per_batch],
                                                     (size, size)), device=sam.device)
        labels = torch.ones(pts.shape[0], dtype=torch.int, device=sam.device)
        low, iou = _decode(sam, features, pts[:, None, :], labels[:, None], None,
                           s.dense_multimask_output > 0)
        low, iou = _select_layers(low, iou, s.multimask_output > 0, s.dense_multimask_output)
        parts.append(_finish(sam, low, iou, size, input_size, s.pred_iou_thresh,
                             s.stability_score_thresh, grid))
    return Proposals.cat(parts)


@torch.no_grad()
def prompt_proposals(sam, features: torch.Tensor, prompt_sets: list[np.ndarray],
                     box: np.ndarray | None, s: Setting) -> Proposals:
    """Masks of the sampled point sets (one ``(m, i, 2)`` array per subset size, official
    batches of ``points_per_batch`` sets), plus ``box`` with every set when given, filtered
    by ``iou_filter`` and ``sel_stability_score_thresh``."""
    from segment_anything.utils.transforms import ResizeLongestSide

    size, grid = s.img_size, s.img_size // 14
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    input_size = transform.get_preprocess_shape(size, size, sam.image_encoder.img_size)
    box_t = None
    if box is not None:
        box_t = torch.as_tensor(transform.apply_boxes(box, (size, size)), dtype=torch.float,
                                device=sam.device)
    parts = [Proposals.empty(size, grid)]
    for sets in prompt_sets:
        for i in range(0, len(sets), s.points_per_batch):
            chunk = sets[i:i + s.points_per_batch]
            pts = torch.as_tensor(transform.apply_coords(chunk, (size, size)),
                                  dtype=torch.float, device=sam.device)
            labels = torch.as_tensor(np.ones(chunk.shape[:2]), dtype=torch.int,
                                     device=sam.device)
            boxes = None if box_t is None else box_t.expand(pts.shape[0], -1)
            low, iou = _decode(sam, features, pts, labels, boxes, s.multimask_output > 0)
            low, iou = _select_layers(low, iou, s.multimask_output > 0, s.output_layer)
            parts.append(_finish(sam, low, iou, size, input_size, s.iou_filter,
                                 s.sel_stability_score_thresh, grid))
    return Proposals.cat(parts)


def non_max_suppression(props: Proposals, threshold: float) -> Proposals:
    """Box NMS by predicted IoU (``batched_nms``, one category): the survivors in NMS order
    (highest IoU first), as the generator returns them."""
    from torchvision.ops.boxes import batched_nms

    keep = batched_nms(props.boxes.float(), props.iou, torch.zeros(len(props.boxes)),
                       iou_threshold=threshold)
    return props.take(keep)
