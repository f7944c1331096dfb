"""SAM (segment-anything) built from the official architecture, or a tiny one for tests.

``build_sam("vit_h", "sam_vit_h")`` loads the official checkpoint strictly after checking
its sha256; ``build_sam("vit_b")`` gives random weights (marked ``random`` in run records);
``build_sam("tiny", image_size=256)`` is a two-block SAM that encodes an image in
milliseconds on the CPU. SAM's own preprocessing (resize longest side, normalise, pad to a
square) is kept: :func:`sam_input` / :func:`encode_sam_images` apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from refseg_bench.devices import resolve_device
from refseg_bench.models.checkpoints import load_checkpoint_into
from refseg_bench.models.provenance import WeightsInfo, attach_weights_info

PATCH_SIZE = 16
PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale (segment-anything defaults)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamSpec:
    """Architecture of one SAM variant: ViT image encoder plus prompt/mask decoder widths."""

    encoder_dim: int
    encoder_depth: int
    encoder_heads: int
    global_attn: tuple[int, ...]
    prompt_dim: int = 256       # prompt embedding width, also the image-embedding channels
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256
    mask_in_chans: int = 16


# Official variants (segment-anything build_sam.py); ``tiny`` is ours, for tests only.
SAM_SPECS: dict[str, SamSpec] = {
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    # Global attention at block 1 so the windowed path and the global path both run.
    "tiny": SamSpec(64, 2, 2, (1,), prompt_dim=64, decoder_mlp_dim=128, decoder_heads=2,
                    iou_hidden_dim=64, mask_in_chans=8),
    # The tiny encoder with the official 256-d prompt encoder and decoder: for CPU checks of
    # methods whose own modules are built for SAM's 256-d prompts (VRP-SAM's encoder).
    "tiny256": SamSpec(64, 2, 2, (1,)),
}


def _spec(variant: str) -> SamSpec:
    if variant not in SAM_SPECS:
        raise ValueError(f"unknown SAM variant {variant!r}; expected one of {sorted(SAM_SPECS)}")
    return SAM_SPECS[variant]


def assemble_sam(variant: str, image_size: int, modeling=None):
    """Random-weight ``Sam`` of ``variant`` at ``image_size``, built from the classes of
    ``modeling`` (a module with ``segment_anything.modeling``'s classes, the default; an
    official checkout's own copy for parity checks), in train mode on the CPU."""
    if modeling is None:
        import segment_anything.modeling as modeling
    spec = _spec(variant)
    ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer = (
        modeling.ImageEncoderViT, modeling.MaskDecoder, modeling.PromptEncoder, modeling.Sam,
        modeling.TwoWayTransformer)
    grid = image_size // PATCH_SIZE
    encoder = ImageEncoderViT(
        depth=spec.encoder_depth, embed_dim=spec.encoder_dim, img_size=image_size,
        mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec.encoder_heads, patch_size=PATCH_SIZE, qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=spec.global_attn, window_size=14, out_chans=spec.prompt_dim,
    )
    prompt = PromptEncoder(
        embed_dim=spec.prompt_dim, image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size), mask_in_chans=spec.mask_in_chans,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=spec.prompt_dim,
                                      mlp_dim=spec.decoder_mlp_dim, num_heads=spec.decoder_heads),
        transformer_dim=spec.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_hidden_dim,
    )
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
               pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))


def build_sam(
    variant: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    image_size: int = 1024,
):
    """Build ``segment_anything.modeling.Sam`` in eval mode on ``device``.

    ``variant``: ``vit_b`` | ``vit_l`` | ``vit_h`` | ``tiny``. ``checkpoint``: a catalogue
    name (e.g. ``"sam_vit_h"``, looked up in the checkpoint directory) or a file path; None
    gives random weights. ``image_size`` is the square encoder input in pixels (a multiple
    of 16; official checkpoints need 1024). Provenance: :func:`weights_info` on the result.
    """
    _spec(variant)
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a multiple of {PATCH_SIZE}, got {image_size}")
    sam = assemble_sam(variant, image_size)
    model_name = f"sam/{variant}" + ("" if image_size == 1024 else f"@{image_size}")
    if checkpoint is None:
        info = WeightsInfo.random(model_name)
    else:
        info = load_checkpoint_into(sam, checkpoint, model=model_name)
    sam = sam.to(resolve_device(str(device))).eval()
    attach_weights_info(sam, info)
    return sam


def sam_input(sam, image: np.ndarray) -> torch.Tensor:
    """SAM's preprocessing of one image: HxWx3 uint8 RGB -> 1x3xSxS float32 on the model's
    device (longest side resized to S = encoder input size, normalised, zero-padded)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(image)
    x = torch.as_tensor(resized, device=sam.device).permute(2, 0, 1).contiguous()
    return sam.preprocess(x[None].float())


@torch.no_grad()
def encode_sam_images(sam, images: list[np.ndarray]) -> torch.Tensor:
    """Image embeddings of a batch in one encoder forward: Bx C x S/16 x S/16 float32
    (C = 256 for official variants). Images may differ in size (each is padded)."""
    if not images:
        raise ValueError("encode_sam_images needs at least one image")
    batch = torch.cat([sam_input(sam, im) for im in images])
    return sam.image_encoder(batch).float()


def set_image_cached(predictor, image: np.ndarray, cache=None) -> None:
    """``predictor.set_image(image)`` for a ``segment_anything.SamPredictor``, taking the
    embedding from ``cache`` (a :class:`~refseg_bench.models.cache.EmbeddingCache`) when this
    image was encoded before by the same model; None encodes as usual. The predictor ends in
    the same state as after ``set_image`` (RGB input)."""
    from refseg_bench.models.cache import EncoderId

    if cache is None:
        predictor.set_image(image)
        return
    sam = predictor.model
    encoder = EncoderId.of(sam, sam.image_encoder.img_size)
    embedding = cache.get_or_compute(image, encoder, lambda im: encode_sam_images(sam, [im])[0])
    h, w = image.shape[:2]
    predictor.reset_image()
    predictor.original_size = (h, w)
    size = sam.image_encoder.img_size
    predictor.input_size = predictor.transform.get_preprocess_shape(h, w, size)
    predictor.features = embedding[None].to(sam.device)
    predictor.is_image_set = True
