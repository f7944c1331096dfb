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
- on the CPU the survivors are up-sampled a few at a time into buffers reused across
  chunks (the same ``upsample_bilinear2d`` kernel, so the same bits: no page faults on a
  fresh ``n x 518 x 518`` float tensor per batch, logits still in cache when thresholded);
  the stability counts are exact integer counts, so the score is the same division;
- masks stay as bit-packed arrays (no RLE round trip: it is the identity); boxes come from
  the packed bits, and the 37 x 37 grid only for the masks that survive box NMS;
- the dense-grid proposals depend on the image alone and are cached across episodes;
- the crop-edge filter is skipped: with one crop equal to the image it never removes a box.

One image is one crop (``crop_n_layers = 0``); the image is ``S x S`` (518).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from refseg_bench.methods.matcher.settings import Setting

# Masks up-sampled at a time on the CPU: 4 x 518 x 518 float32 logits stay in cache.
_CHUNK = 4


@dataclass
class Proposals:
    """``n`` binary masks of an ``S x S`` image.

    ``packed``: ``(n, S, ceil(S/8))`` uint8 (``np.packbits`` along x); ``iou``: ``(n,)``
    float32 predicted IoU; ``boxes``: ``(n, 4)`` XYXY int64 (``batched_mask_to_box``).
    :attr:`grid` (computed on first use, for the few masks that get scored) is the official
    37 x 37 mask."""

    packed: np.ndarray
    iou: torch.Tensor
    boxes: torch.Tensor

    @classmethod
    def empty(cls, size: int) -> Proposals:
        return cls(np.zeros((0, size, (size + 7) // 8), np.uint8), torch.zeros(0),
                   torch.zeros(0, 4, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.iou)

    @classmethod
    def cat(cls, parts: list[Proposals]) -> Proposals:
        return cls(np.concatenate([p.packed for p in parts]), torch.cat([p.iou for p in parts]),
                   torch.cat([p.boxes for p in parts]))

    def take(self, idx: torch.Tensor) -> Proposals:
        i = idx.cpu()
        return Proposals(self.packed[i.numpy()], self.iou[i], self.boxes[i])

    def masks(self, idx: torch.Tensor | None = None) -> np.ndarray:
        """``(m, S, S)`` bool masks (all, or those at ``idx``)."""
        packed = self.packed if idx is None else self.packed[idx.cpu().numpy()]
        return np.unpackbits(packed, axis=-1, count=packed.shape[1]).astype(bool)

    @cached_property
    def grid(self) -> torch.Tensor:
        """``(n, g, g)`` bool (``g = S / 14``): the official 37 x 37 mask, the cells with any
        foreground pixel (``cv2.resize(INTER_AREA) > 0`` of a 0/1 mask at the integer
        factor 14); every cell for an empty mask (the official threshold becomes
        ``max - 1e-6`` there)."""
        n, s, width = self.packed.shape
        g = s // 14
        # OR the packed rows of each band of 14 first: 14 times fewer bits to unpack
        bands = np.bitwise_or.reduce(self.packed[:, :g * 14].reshape(n, g, 14, width), axis=2)
        cells = np.unpackbits(bands, axis=-1, count=g * 14).reshape(n, g, g, 14).any(axis=3)
        cells[~cells.reshape(n, -1).any(axis=1)] = True
        return torch.from_numpy(cells)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """``(n, p)`` bool: whether each mask covers each ``(x, y)`` pixel of ``points``
        (clipped to the image, as the official ``is_in_mask``)."""
        s = self.packed.shape[1]
        pts = np.clip(points.astype(int)[:, ::-1], 0, [s - 1, s - 1])
        y, x = pts[:, 0], pts[:, 1]
        return ((self.packed[:, y, x // 8] >> (7 - x % 8)) & 1).astype(bool)

    def nbytes(self) -> int:
        return self.packed.nbytes + 4 * len(self.iou) + 8 * self.boxes.numel()


def _select_layers(masks, iou, multimask: bool, layer: int):
    """The generator's output-layer choice (``output_layer`` / ``sel_output_layer``)."""
    if multimask:
        if layer in (0, 1, 2):
            return masks[:, layer][:, None], iou[:, layer][:, None]
        if layer in (3, 4, 5):
            return masks[:, layer - 3:], iou[:, layer - 3:]
    return masks, iou


def packed_boxes(packed: np.ndarray) -> torch.Tensor:
    """``(n, 4)`` int64 XYXY boxes of bit-packed ``(n, S, ceil(S/8))`` masks, as
    ``batched_mask_to_box`` computes them on the unpacked masks (``[0, 0, 0, 0]`` when
    empty)."""
    n, s = packed.shape[:2]
    rows = packed.any(axis=2)
    cols = np.unpackbits(np.bitwise_or.reduce(packed, axis=1), axis=-1, count=s).astype(bool)
    out = np.zeros((n, 4), np.int64)
    full = rows.any(axis=1)
    if full.any():
        r, c = rows[full], cols[full]
        out[full] = np.stack([c.argmax(1), r.argmax(1), s - 1 - c[:, ::-1].argmax(1),
                              s - 1 - r[:, ::-1].argmax(1)], axis=1)
    return torch.from_numpy(out)


class _Upsampler:
    """``sam.postprocess_masks`` (bilinear to the encoder size, crop to ``input_size``,
    bilinear to ``size``) into buffers reused from chunk to chunk: the same kernel on the
    same inputs (so the same bits), without a fresh allocation of ``n x S x S`` floats per
    batch (page faults) and with each chunk's logits still in cache for the thresholds."""

    def __init__(self, sam, input_size: tuple[int, int], size: int, chunk: int,
                 device: torch.device) -> None:
        enc = sam.image_encoder.img_size
        self.input_size, self.size = input_size, size
        self.mid = torch.empty(chunk, 1, enc, enc, device=device)
        self.out = torch.empty(chunk, 1, size, size, device=device)

    def __call__(self, low: torch.Tensor) -> torch.Tensor:
        """``(k, h, w)`` low-res logits -> ``(k, S, S)`` float32 logits (a view of the
        buffer: valid until the next call)."""
        k, up = len(low), torch.ops.aten.upsample_bilinear2d.out
        mid = up(low[:, None], list(self.mid.shape[-2:]), False, out=self.mid[:k])
        mid = mid[..., :self.input_size[0], :self.input_size[1]]
        return up(mid, [self.size, self.size], False, out=self.out[:k])[:, 0]


def _above(logits: torch.Tensor, threshold: float, scratch: np.ndarray | None) -> np.ndarray:
    """``(k, S, S)`` bool ``logits > threshold`` on the host (into ``scratch`` when given:
    NumPy compares and counts several times faster than torch does on bool tensors)."""
    if scratch is None:
        return (logits > threshold).cpu().numpy()
    return np.greater(logits.numpy(), threshold, out=scratch[:len(logits)])


def _counts(logits: torch.Tensor, threshold: float, scratch: np.ndarray | None) -> torch.Tensor:
    """``(k,)`` int32 number of pixels with ``logits > threshold`` per mask: exact, like the
    int16 / int32 sums of ``calculate_stability_score``."""
    if scratch is None:
        return (logits > threshold).flatten(1).sum(1, dtype=torch.int32).cpu()
    # per mask: count_nonzero without an axis is a fast popcount, with one a slow bool sum
    return torch.tensor([np.count_nonzero(m) for m in _above(logits, threshold, scratch)],
                        dtype=torch.int32)


def _finish(sam, low: torch.Tensor, iou: torch.Tensor, size: int, input_size, iou_thresh: float,
            stability_thresh: float, on_host: bool | None = None) -> Proposals:
    """Filter ``(b, m, h, w)`` low-res logits / ``(b, m)`` IoUs as one generator batch:
    IoU filter, up-sampling, stability filter (offset 1.0), threshold at
    ``sam.mask_threshold``. ``on_host`` (default: on a CPU device) up-samples ``_CHUNK``
    masks at a time and thresholds with NumPy (a mask's up-sampled logits do not depend on
    the other masks of its batch); otherwise the whole batch at once with torch."""
    low, iou = low.flatten(0, 1), iou.flatten(0, 1)
    if iou_thresh > 0.0:
        keep = iou > iou_thresh
        low, iou = low[keep], iou[keep]
    if len(iou) == 0:
        return Proposals.empty(size)
    on_host = low.device.type == "cpu" if on_host is None else on_host
    chunk = _CHUNK if on_host else len(iou)
    upsample = _Upsampler(sam, input_size, size, chunk, low.device)
    scratch = np.empty((chunk, size, size), bool) if on_host else None
    t, kept, packed = sam.mask_threshold, [], []
    for i in range(0, len(iou), chunk):
        logits = upsample(low[i:i + chunk])
        keep = np.ones(len(logits), bool)
        if stability_thresh > 0.0:
            # calculate_stability_score's int32 / int32 division, on the same counts
            score = _counts(logits, t + 1.0, scratch) / _counts(logits, t - 1.0, scratch)
            keep = (score >= stability_thresh).numpy()
        if keep.any():
            packed.append(np.packbits(_above(logits, t, scratch)[keep], axis=-1))
            kept.append(i + keep.nonzero()[0])
    if not kept:
        return Proposals.empty(size)
    packed = np.concatenate(packed)
    return Proposals(packed, iou.cpu()[np.concatenate(kept)], packed_boxes(packed))


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

    size = s.img_size
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
                             s.stability_score_thresh))
    return Proposals.cat(parts)


@torch.no_grad()
def prompt_proposals(sam, features: torch.Tensor, prompt_sets: list[np.ndarray],
                     box: np.ndarray | None, s: Setting) -> Proposals:
    """Masks of the sampled point sets (one ``(m, i, 2)`` array per subset size, official
    batches of ``points_per_batch`` sets), plus ``box`` with every set when given, filtered
    by ``iou_filter`` and ``sel_stability_score_thresh``."""
    from segment_anything.utils.transforms import ResizeLongestSide

    size = s.img_size
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    input_size = transform.get_preprocess_shape(size, size, sam.image_encoder.img_size)
    box_t = None
    if box is not None:
        box_t = torch.as_tensor(transform.apply_boxes(box, (size, size)), dtype=torch.float,
                                device=sam.device)
    parts = [Proposals.empty(size)]
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
                                 s.sel_stability_score_thresh))
    return Proposals.cat(parts)


def non_max_suppression(props: Proposals, threshold: float) -> Proposals:
    """Box NMS by predicted IoU (``batched_nms``, one category): the survivors in NMS order
    (highest IoU first), as the generator returns them."""
    from torchvision.ops.boxes import batched_nms

    keep = batched_nms(props.boxes.float(), props.iou, torch.zeros(len(props.boxes)),
                       iou_threshold=threshold)
    return props.take(keep)
