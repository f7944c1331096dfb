"""Real-size models on CUDA (deselected by default; run with ``-m gpu``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_sam_vit_h_bf16_encoding_on_cuda():
    from refseg_bench.models.precision import autocast
    from refseg_bench.models.sam import build_sam, encode_sam_images

    sam = build_sam("vit_h", device="cuda")
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    with autocast("cuda", "bf16"):
        emb = encode_sam_images(sam, [image, image])
    assert emb.shape == (2, 256, 64, 64) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()


@needs_cuda
@pytest.mark.parametrize("image_size", [1024, 512])
def test_sam2_hiera_l_predictor_on_cuda(image_size):
    from refseg_bench.models.sam2_models import build_sam2, sam2_image_predictor

    predictor = sam2_image_predictor(build_sam2("hiera_l", "2.1", image_size=image_size,
                                                device="cuda"))
    predictor.set_image(np.zeros((300, 400, 3), np.uint8))
    masks, _, _ = predictor.predict(point_coords=np.array([[100.0, 100.0]]),
                                    point_labels=np.array([1]))
    assert masks.shape == (3, 300, 400)
    assert predictor._features["image_embed"].shape[-1] == image_size // 16


@needs_cuda
def test_video_predictor_on_cuda_from_memory():
    from refseg_bench.models.sam2_models import build_sam2, init_video_state

    video = build_sam2("hiera_t", "2.0", video=True, device="cuda")
    frames = [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(3)]
    state = init_video_state(video, frames)
    mask = np.zeros((120, 160), bool)
    mask[30:80, 40:100] = True
    video.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask)
    assert len(list(video.propagate_in_video(state))) == 3
