"""SAM as VRP-SAM uses it: a stretched query image in, prompt tokens as sparse prompts.

- Image encoder input: the ImageNet-normalised ``S x S`` query tensor bilinearly stretched
  (aligned corners) to SAM's square input size, with no padding (VRP-SAM: ``SAM2pred.py``).
- Prompts: the VRP tokens are the whole sparse prompt (no points, no boxes); the dense
  prompt is SAM's ``no_mask_embed``; one mask out (``multimask_output=False``).
SAM stays frozen; gradients flow through its mask decoder into the tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from refseg_bench.models.sam_decoder import attend, self_attention


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


@dataclass
class DecoderImageSide:
    """What SAM's mask decoder computes from the image alone, before any prompt token is
    involved (cacheable per image under the frozen SAM): ``keys`` ``(B, hw, C)``, the image
    embedding plus the dense (no-mask) prompt, flattened; the first two-way block's
    image-side projections ``t2i_k``, ``t2i_v`` (token-to-image keys and values) and
    ``i2t_q`` (image-to-token queries), ``(B, hw, C')``. The position encoding and grid are
    SAM's own (:func:`_dense_pe`), not stored."""

    keys: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor

    @classmethod
    def cat(cls, parts: list[dict]) -> DecoderImageSide:
        """From cache entries (``vars`` of one-row sides), in order."""
        return cls(**{k: torch.cat([p[k] for p in parts]) for k in parts[0]})


def _dense_pe(sam) -> torch.Tensor:
    """SAM's position encoding of the embedding grid, flattened: ``(1, hw, C)``."""
    return sam.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)


def decoder_image_side(sam, embeddings: torch.Tensor) -> DecoderImageSide:
    """``embeddings`` ``(B, C, h, w)`` (``h x w``: SAM's embedding grid) ->
    :class:`DecoderImageSide`."""
    src = embeddings + sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    keys = src.flatten(2).permute(0, 2, 1)
    first = sam.mask_decoder.transformer.layers[0]
    with_pe = keys + _dense_pe(sam)
    return DecoderImageSide(keys, first.cross_attn_token_to_image.k_proj(with_pe),
                            first.cross_attn_token_to_image.v_proj(keys),
                            first.cross_attn_image_to_token.q_proj(with_pe))


def decode_masks(sam, embeddings: torch.Tensor | None, prompts: torch.Tensor,
                 side: DecoderImageSide | None = None) -> torch.Tensor:
    """Low-resolution mask logits from image embeddings and VRP prompt tokens, batched.

    ``embeddings``: ``(B, C, h, w)`` (unused when ``side`` is given); ``prompts``:
    ``(B, N, C)`` (``N`` = 50 per shot); ``side``: the embeddings'
    :class:`DecoderImageSide` when already computed. Returns ``(B, 1, 4h, 4w)`` float
    logits (256x256 for official SAM): SAM's first mask output, i.e.
    ``multimask_output=False``.

    segment-anything's ``MaskDecoder.predict_masks`` repeats the image embedding once per
    prompt set, which is right for one image only; VRP-SAM patches that line so that
    embedding ``i`` pairs with prompt set ``i``. This runs the same decoder modules with that
    pairing, so a batch is one pass (:func:`decode_masks_loop` is the per-episode
    reference through the unmodified decoder). The two-way transformer is stepped here,
    the same operations in the same order as ``TwoWayTransformer.forward``, so that the
    first block can take its image-side projections from ``side``.
    """
    if side is None:
        _check(embeddings, prompts)
        side = decoder_image_side(sam, embeddings)
    dec = sam.mask_decoder
    b, c = prompts.shape[0], prompts.shape[2]
    if side.keys.shape[0] != b or side.keys.shape[2] != c:
        raise ValueError(f"image side {tuple(side.keys.shape)} (B, hw, C) and prompts "
                         f"{tuple(prompts.shape)} must agree on batch size and width")
    output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens[None].expand(b, -1, -1), prompts], dim=1)
    key_pe = _dense_pe(sam)
    layers = dec.transformer.layers
    queries, keys = _first_block(layers[0], tokens, side)
    for layer in layers[1:]:
        queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
    t = dec.transformer
    out = t.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
    hs = t.norm_final_attn(queries + out)
    h, w = sam.prompt_encoder.image_embedding_size
    upscaled = dec.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
    weights = dec.output_hypernetworks_mlps[0](hs[:, 1, :])  # first mask token
    _, cu, hu, wu = upscaled.shape
    return (weights[:, None, :] @ upscaled.reshape(b, cu, hu * wu)).reshape(b, 1, hu, wu)


def _first_block(layer, tokens: torch.Tensor, side: DecoderImageSide
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` of the first block (queries = ``tokens``, keys =
    the image) with its image-side projections from ``side``."""
    queries = self_attention(layer, tokens, tokens)
    t2i = layer.cross_attn_token_to_image
    out = attend(t2i, t2i.q_proj(queries + tokens), side.t2i_k, side.t2i_v)
    queries = layer.norm2(queries + out)
    queries = layer.norm3(queries + layer.mlp(queries))
    i2t = layer.cross_attn_image_to_token
    q = queries + tokens
    out = attend(i2t, side.i2t_q, i2t.k_proj(q), i2t.v_proj(queries))
    return queries, layer.norm4(side.keys + out)


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
