"""SAM 2 (the ``sam2`` package) built from its shipped configs, at any image size, on the
CPU or GPU, plus the image predictor and a video predictor fed from in-memory frames.

Configs are read with OmegaConf straight from the package (no Hydra ``compose``), edited
as data (image size, tiny test trunk, predictor options) and instantiated. Importing
``sam2`` still initialises Hydra's global config search path once (its ``__init__`` does
that); nothing here adds to it.

CPU pitfalls handled (docs/environment.md §3): the device defaults to ``cpu`` rather than
``cuda``; the video predictor's hole filling, which needs the CUDA extension, is off
(``fill_hole_area = 0``, set after building because the post-processing override would
set it to 8); ``vos_optimized`` (torch.compile) is never used; the image predictor's
feature sizes follow the model's image size instead of assuming 1024.
"""

from __future__ import annotations

from collections import OrderedDict
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from refseg_bench.devices import resolve_device
from refseg_bench.models.checkpoints import load_checkpoint_into
from refseg_bench.models.provenance import WeightsInfo, attach_weights_info

# variant -> suffix of the shipped config file (configs/sam2.1/sam2.1_hiera_<suffix>.yaml).
SAM2_VARIANTS = {"hiera_t": "t", "hiera_s": "s", "hiera_b+": "b+", "hiera_l": "l", "tiny": "t"}
SAM2_VERSIONS = ("2.0", "2.1")
BACKBONE_STRIDE = 16  # image size / image-embedding size

# Post-processing that sam2's own builders add by default (apply_postprocessing=True).
_IMAGE_POSTPROCESSING = (
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
_VIDEO_POSTPROCESSING = ("model.binarize_mask_from_pts_for_mem_enc=true",)

# A Hiera trunk small enough for tests: 5 blocks; global attention at block 3, the second
# block of stage 2 (a global block may not open a stage); neck input channels follow the
# stage widths 32, 64, 128, 256.
_TINY_OVERRIDES = (
    "model.image_encoder.trunk.embed_dim=32",
    "model.image_encoder.trunk.num_heads=1",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",
    "model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "model.memory_attention.num_layers=1",
    "model.memory_attention.layer.dim_feedforward=256",
)


def _config_file(variant: str, version: str):
    if variant not in SAM2_VARIANTS:
        raise ValueError(f"unknown SAM 2 variant {variant!r}; expected one of "
                         f"{sorted(SAM2_VARIANTS)}")
    if version not in SAM2_VERSIONS:
        raise ValueError(f"unknown SAM 2 version {version!r}; expected one of {SAM2_VERSIONS}")
    folder, stem = ("sam2.1", "sam2.1_hiera") if version == "2.1" else ("sam2", "sam2_hiera")
    name = f"configs/{folder}/{stem}_{SAM2_VARIANTS[variant]}.yaml"
    return resources.files("sam2").joinpath(name)


def sam2_config(variant: str, version: str = "2.1", image_size: int = 1024, *,
                video: bool = False, postprocessing: bool = True) -> DictConfig:
    """The resolved model config: the shipped YAML plus our edits.

    ``image_size`` (pixels, a multiple of 16) also sets the memory-attention RoPE grid to
    ``image_size // 16`` (as FSSAM's 512 configs do: 32 x 32). ``video`` selects
    ``SAM2VideoPredictor``; ``postprocessing`` adds sam2's default post-processing options.
    """
    if image_size % BACKBONE_STRIDE:
        raise ValueError(f"image_size must be a multiple of {BACKBONE_STRIDE}, got {image_size}")
    cfg = OmegaConf.create(_config_file(variant, version).read_text())
    grid = image_size // BACKBONE_STRIDE
    edits = [f"model.image_size={image_size}",
             f"model.memory_attention.layer.self_attention.feat_sizes=[{grid},{grid}]",
             f"model.memory_attention.layer.cross_attention.feat_sizes=[{grid},{grid}]"]
    if variant == "tiny":
        edits += _TINY_OVERRIDES
    if postprocessing:
        edits += _IMAGE_POSTPROCESSING + (_VIDEO_POSTPROCESSING if video else ())
    if video:
        edits.append("model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(edits))
    OmegaConf.resolve(cfg)
    return cfg


def build_sam2(
    variant: str,
    version: str = "2.1",
    checkpoint: str | Path | None = None,
    image_size: int = 1024,
    device: str | torch.device = "cpu",
    *,
    video: bool = False,
    postprocessing: bool = True,
):
    """Build ``SAM2Base`` (or ``SAM2VideoPredictor`` when ``video``) in eval mode.

    ``variant``: ``hiera_t`` | ``hiera_s`` | ``hiera_b+`` | ``hiera_l`` | ``tiny``;
    ``version``: ``"2.1"`` or ``"2.0"`` (FSSAM and CAV-SAM use 2.0). ``checkpoint``: a
    catalogue name (e.g. ``"sam2_hiera_s"``) or a file path holding ``{"model": state
    dict}`` as the official files do; None gives random weights. Provenance:
    :func:`~refseg_bench.models.provenance.weights_info` on the result.
    """
    from hydra.utils import instantiate

    cfg = sam2_config(variant, version, image_size, video=video, postprocessing=postprocessing)
    model = instantiate(cfg.model, _recursive_=True)
    name = f"sam{version}/{variant}" + ("" if image_size == 1024 else f"@{image_size}")
    if checkpoint is None:
        info = WeightsInfo.random(name)
    else:
        info = load_checkpoint_into(model, checkpoint, model=name, key="model", prefixes=())
    if video:
        model.fill_hole_area = 0  # hole filling needs sam2's CUDA extension
    model = model.to(resolve_device(str(device))).eval()
    attach_weights_info(model, info)
    return model


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """Backbone feature-map sizes (strides 4, 8, 16) that SAM2ImagePredictor unflattens."""
    return [(image_size // s, image_size // s) for s in (4, 8, 16)]


def sam2_image_predictor(model, **kwargs):
    """``SAM2ImagePredictor`` whose feature sizes match ``model.image_size`` (upstream
    hard-codes those of 1024). ``kwargs`` go to the predictor (e.g. ``mask_threshold``)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model, **kwargs)
    predictor._bb_feat_sizes = feature_sizes(model.image_size)
    return predictor


_IMG_MEAN = (0.485, 0.456, 0.406)  # SAM 2 video frames: ImageNet statistics on 0..1 RGB
_IMG_STD = (0.229, 0.224, 0.225)


def frames_to_tensor(frames: list[np.ndarray], image_size: int) -> torch.Tensor:
    """Frames (HxWx3 uint8 RGB, all the same size) -> Nx3xSxS float32, resized with PIL's
    default filter and normalised as sam2's JPEG-folder loader does."""
    from PIL import Image

    if not frames:
        raise ValueError("a video needs at least one frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or any(f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3
                               for f in frames):
        raise ValueError(f"frames must be HxWx3 uint8 RGB arrays of one size; got shapes "
                         f"{sorted(shapes)} and dtypes {sorted({str(f.dtype) for f in frames})}")
    out = torch.empty(len(frames), 3, image_size, image_size, dtype=torch.float32)
    for i, frame in enumerate(frames):
        resized = np.asarray(Image.fromarray(frame).resize((image_size, image_size)))
        out[i] = torch.from_numpy(resized / 255.0).permute(2, 0, 1)
    mean = torch.tensor(_IMG_MEAN)[:, None, None]
    std = torch.tensor(_IMG_STD)[:, None, None]
    return (out - mean) / std


@torch.inference_mode()
def init_video_state(predictor, frames: list[np.ndarray], *, offload_video_to_cpu: bool = False,
                     offload_state_to_cpu: bool = False) -> dict:
    """The inference state ``SAM2VideoPredictor.init_state`` builds from a JPEG folder, built
    from in-memory frames instead. Use it with ``add_new_mask`` / ``add_new_points_or_box``
    and ``propagate_in_video`` as usual. The keys follow sam2 1.1.0 (a test compares them
    with ``init_state``'s)."""
    device = predictor.device
    images = frames_to_tensor(frames, predictor.image_size)
    if not offload_video_to_cpu:
        images = images.to(device)
    height, width = frames[0].shape[:2]
    state = {
        "images": images, "num_frames": len(frames),
        "offload_video_to_cpu": offload_video_to_cpu,
        "offload_state_to_cpu": offload_state_to_cpu,
        "video_height": height, "video_width": width, "device": device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
        "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {},
        "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
        "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)  # as init_state: warm frame 0
    return state


def set_image_cached(predictor, image: np.ndarray, cache=None) -> None:
    """``predictor.set_image(image)`` for a ``SAM2ImagePredictor`` (HxWx3 uint8 RGB), taking
    the features (image embedding and high-resolution maps) from ``cache`` when this image
    was encoded before by the same model at the same size; None encodes as usual."""
    from refseg_bench.models.cache import EncoderId

    if cache is None:
        predictor.set_image(image)
        return
    encoder = EncoderId.of(predictor.model, predictor.model.image_size)

    def encode(im: np.ndarray) -> dict:
        predictor.set_image(im)
        f = predictor._features
        return {"image_embed": f["image_embed"][0],
                "high_res_feats": [x[0] for x in f["high_res_feats"]]}

    feats = cache.get_or_compute(image, encoder, encode)
    device = predictor.device
    predictor.reset_predictor()
    predictor._orig_hw = [image.shape[:2]]
    predictor._features = {"image_embed": feats["image_embed"][None].to(device),
                           "high_res_feats": [x[None].to(device) for x in feats["high_res_feats"]]}
    predictor._is_image_set = True
