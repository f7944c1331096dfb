"""SAM as VRP-SAM uses it: a stretched query image in, prompt tokens as sparse prompts.

- Image encoder input: the ImageNet-normalised ``S x S`` query tensor bilinearly stretched
  (aligned corners) to SAM's square input size, with no padding (VRP-SAM: ``SAM2pred.py``).
- Prompts: the VRP tokens are the whole sparse prompt (no points, no boxes); the dense
  prompt is SAM's ``no_mask_embed``; one mask out (``multimask_output=False``).
SAM stays frozen; gradients flow through its mask decoder into the tokens only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sam_image_input(images: torch.Tensor, sam) -> torch.Tensor:
    """``(B, 3, S, S)`` normalised images -> ``(B, 3, T, T)`` with ``T`` = SAM's input size."""
    size = sam.image_encoder.img_size
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)


@torch.no_grad()
def encode_images(sam, images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` normalised images -> ``(B, C, T/16, T/16)`` image embeddings."""
    return sam.image_encoder(sam_image_input(images, sam))


def decode_masks(sam, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Low-resolution mask logits from image embeddings and VRP prompt tokens, batched.

    ``embeddings``: ``(B, C, h, w)``; ``prompts``: ``(B, N, C)`` (``N`` = 50 per shot).
    Returns ``(B, 1, 4h, 4w)`` float logits (256x256 for official SAM): SAM's first mask
    output, i.e. ``multimask_output=False``.

    segment-anything's ``MaskDecoder.predict_masks`` repeats the image embedding once per
    prompt set, which is right for one image only; VRP-SAM patches that line so that
    embedding ``i`` pairs with prompt set ``i``. This runs the same decoder modules with that
    pairing, so a batch is one pass (:func:`decode_masks_loop` is the per-episode
    reference through the unmodified decoder).
    """
    _check(embeddings, prompts)
    dec, pe = sam.mask_decoder, sam.prompt_encoder
    b, c, h, w = embeddings.shape
    output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens[None].expand(b, -1, -1), prompts], dim=1)
    src = embeddings + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
    pos = pe.get_dense_pe().expand(b, -1, -1, -1)
    hs, src = dec.transformer(src, pos, tokens)
    upscaled = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    weights = dec.output_hypernetworks_mlps[0](hs[:, 1, :])  # first mask token
    _, cu, hu, wu = upscaled.shape
    return (weights[:, None, :] @ upscaled.reshape(b, cu, hu * wu)).reshape(b, 1, hu, wu)


def decode_masks_loop(sam, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """:func:`decode_masks` one episode at a time through ``sam.mask_decoder`` itself."""
    _check(embeddings, prompts)
    pe = sam.prompt_encoder
    h, w = embeddings.shape[-2:]
    dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
    out = []
    for i in range(embeddings.shape[0]):
        masks, _ = sam.mask_decoder(
            image_embeddings=embeddings[i : i + 1], image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=prompts[i : i + 1], dense_prompt_embeddings=dense,
            multimask_output=False)
        out.append(masks)
    return torch.cat(out)


def _check(embeddings: torch.Tensor, prompts: torch.Tensor) -> None:
    if embeddings.shape[0] != prompts.shape[0] or embeddings.shape[1] != prompts.shape[2]:
        raise ValueError(f"embeddings {tuple(embeddings.shape)} and prompts "
                         f"{tuple(prompts.shape)} must agree on batch size and width")
