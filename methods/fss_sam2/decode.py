"""SAM 2's mask head as FSSAM uses it, over the stock prompt encoder and mask decoder.

:func:`decode_ungated` is ``SAM2Base._forward_sam_heads`` without prompts and *without*
the hard object-score gate: stock ``sam2`` replaces every mask logit with -1024 when the
predicted object score is <= 0; FSSAM comments that line out, so a query whose object score
is low still gets its mask logits. Multimask output follows the model's ``_use_multimask``
for a non-initial frame without points (on for the released configs): the best of the
three masks by predicted IoU.

:func:`prompted_masks` is how a weak reference becomes a support mask here (no FSSAM
counterpart): SAM 2 prompted with the annotation's geometry on the support image, as its
video predictor treats a click or box on a conditioning frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from refseg_bench.methods.fss_sam2.memory import ImageFeatures


def decode_ungated(sam2, features: torch.Tensor, high_res: list[torch.Tensor]) -> torch.Tensor:
    """Mask logits ``(B, 1, S, S)`` (S = ``sam2.image_size``) from memory-conditioned
    features ``(B, 256, h, w)`` and the two high-resolution maps, with no prompt and no
    object-score gate. Upsampling as stock: bilinear, corners not aligned."""
    b = features.shape[0]
    coords = torch.zeros(b, 1, 2, device=features.device)
    labels = -torch.ones(b, 1, dtype=torch.int32, device=features.device)  # padding point
    sparse, dense = sam2.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    multimask = sam2._use_multimask(False, None)
    masks, ious, _, _ = sam2.sam_mask_decoder(
        image_embeddings=features, image_pe=sam2.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=multimask, repeat_image=False, high_res_features=high_res)
    if multimask:
        best = ious.argmax(dim=-1)
        masks = masks[torch.arange(b, device=masks.device), best][:, None]
    size = (sam2.image_size, sam2.image_size)
    return F.interpolate(masks.float(), size=size, mode="bilinear", align_corners=False)


def _point_inputs(annotation, image_hw: tuple[int, int], size: int, device) -> dict:
    """SAM 2's point inputs for one annotation: its box as two corner points (labels 2, 3,
    as the video predictor encodes boxes), else its points (labels as given), in the
    coordinates of the ``size x size`` input (scaled as ``add_new_points_or_box`` does)."""
    h, w = image_hw
    scale = np.array([size / w, size / h], dtype=np.float32)
    if annotation.kind == "box":
        coords = annotation.boxes[:1].reshape(2, 2) * scale
        labels = np.array([2, 3])
    else:
        coords = annotation.points * scale
        labels = annotation.point_labels
    return {"point_coords": torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
            "point_labels": torch.as_tensor(labels, dtype=torch.int32, device=device)[None]}


def has_geometry(annotation) -> bool:
    return (annotation.kind == "box" and len(annotation.boxes) > 0) or (
        annotation.kind in ("point", "scribble") and len(annotation.points) > 0)


@torch.no_grad()
def prompted_masks(sam2, features: ImageFeatures, annotations, image_sizes) -> torch.Tensor:
    """Binary masks ``(N, 1, S, S)``: SAM 2's prediction on each support image (features
    of ``N`` images) for its annotation's box or points, as on a conditioning frame without
    memory (``no_mem_embed`` added, multimask for a single click, best by predicted IoU,
    stock object-score gate), thresholded at logit 0. An annotation without geometry gives
    an empty mask (the caller falls back to its raster)."""
    out = []
    for i, (ann, hw) in enumerate(zip(annotations, image_sizes, strict=True)):
        if not has_geometry(ann):
            out.append(features.pix_feat.new_zeros(1, 1, sam2.image_size, sam2.image_size))
            continue
        pix = features.pix_feat[i:i + 1]
        if sam2.directly_add_no_mem_embed:
            pix = pix + sam2.no_mem_embed.view(1, -1, 1, 1)
        points = _point_inputs(ann, hw, sam2.image_size, pix.device)
        res = sam2._forward_sam_heads(
            backbone_features=pix, point_inputs=points, mask_inputs=None,
            high_res_features=[m[i:i + 1] for m in features.high_res],
            multimask_output=sam2._use_multimask(True, points))
        out.append((res[4] > 0).float())
    return torch.cat(out)
