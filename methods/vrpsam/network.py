"""VRP encoder + frozen SAM as one callable: episode tensors in, mask logits out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from refseg_bench.methods.vrpsam.encoder import VRPEncoder
from refseg_bench.methods.vrpsam.inputs import EpisodeTensors, image_tensor, logits_to_size
from refseg_bench.methods.vrpsam.sam_head import (
    DecoderImageSide,
    decode_masks,
    decoder_image_side,
    encode_images,
)
from refseg_bench.models.cache import EmbeddingCache, EncoderId


class VRPSAMNet:
    """The trainable encoder and frozen SAM of one model configuration.

    ``image_size`` is the square input of the encoder (512 officially); SAM sees the same
    normalised image stretched to its own input size.
    """

    def __init__(self, encoder: VRPEncoder, sam, image_size: int,
                 cache: EmbeddingCache | None = None, prompt_scale: float = 1.0,
                 logit_scale: float = 1.0) -> None:
        if encoder.hidden_dim != sam.prompt_encoder.embed_dim:
            raise ValueError(f"encoder hidden_dim {encoder.hidden_dim} must equal SAM's prompt "
                             f"width {sam.prompt_encoder.embed_dim}")
        self.encoder, self.sam, self.image_size = encoder, sam, image_size
        self.backbone_info = None  # WeightsInfo of the backbone, set by build_net
        # Both 1 except for random SAM stand-ins (see ModelSpec).
        self.prompt_scale, self.logit_scale = prompt_scale, logit_scale
        for p in sam.parameters():
            p.requires_grad_(False)
        sam.eval()
        self.cache = cache if cache is not None else EmbeddingCache()
        # VRP-SAM stretches its own S x S input: not SAM's standard padded preprocessing.
        self.encoder_id = EncoderId.of(sam, (image_size, sam.image_encoder.img_size),
                                       model=f"{_sam_name(sam)}+vrpsam-stretch")

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def embeddings(self, query: torch.Tensor | None,
                   images: Sequence[np.ndarray] | None = None) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, C, h, w)`` SAM image embeddings. With the raw query
        ``images`` given, embeddings come from the cache (keyed by image content) and
        ``query`` is not read.

        An entry cached under ``inference_mode`` is cloned before use with autograd."""
        if images is None:
            return encode_images(self.sam, query)

        def encode(missing: list[np.ndarray]) -> torch.Tensor:
            x = torch.stack([image_tensor(im, self.image_size) for im in missing])
            return encode_images(self.sam, x.to(self.device))

        out = torch.stack(self.cache.encode_batch(images, self.encoder_id, encode))
        if torch.is_inference(out) and not torch.is_inference_mode_enabled():
            out = out.clone()
        return out.to(self.device)

    def logits(self, batch: EpisodeTensors, images: Sequence[np.ndarray] | None = None,
               support_feats: list | None = None, query_feats=None,
               decoder_side: DecoderImageSide | None = None) -> torch.Tensor:
        """Mask logits ``(B, 1, S, S)`` at the encoder input size (the loss resolution);
        ``images``: the raw query images, to use the embedding cache; ``support_feats``:
        per shot, the supports' frozen features, ``query_feats`` the queries'
        (``QueryFeatures``), ``decoder_side`` the queries' ``DecoderImageSide``, when
        already computed."""
        prompts = self.encoder.encode_shots(batch.query, batch.supports, batch.masks,
                                            support_feats, query_feats)
        embeddings = self.embeddings(batch.query, images) if decoder_side is None else None
        low = decode_masks(self.sam, embeddings, prompts * self.prompt_scale, decoder_side)
        return logits_to_size(low * self.logit_scale, (self.image_size, self.image_size))

    def decoder_side(self, images: Sequence[np.ndarray]) -> DecoderImageSide:
        """The mask decoder's image side of raw query ``images`` (embeddings from the
        cache)."""
        return decoder_image_side(self.sam, self.embeddings(None, images))


def _sam_name(sam) -> str:
    from refseg_bench.models.provenance import weights_info

    try:
        return weights_info(sam).model
    except ValueError:  # a SAM not built by refseg_bench.models (tests may assemble one)
        return f"sam/{type(sam.image_encoder).__name__}"
