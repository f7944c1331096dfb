"""SAM 2 builders: official architectures, 512 input, strict reload, predictors on the CPU,
the video predictor fed from in-memory frames, and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.cache import EmbeddingCache, EncoderId
from refseg_bench.models.provenance import weights_info
from refseg_bench.models.sam2_models import (
    build_sam2,
    feature_sizes,
    init_video_state,
    sam2_config,
    sam2_image_predictor,
)

POINT = (np.array([[60.0, 40.0]]), np.array([1]))


def _image(h=100, w=150, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_sam2("tiny", image_size=256)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_hiera_t_matches_the_official_builder(version):
    from sam2.build_sam import build_sam2 as official

    folder = "sam2.1/sam2.1" if version == "2.1" else "sam2/sam2"
    ref = official(f"configs/{folder}_hiera_t.yaml", device="cpu").state_dict()
    ours = build_sam2("hiera_t", version).state_dict()
    assert ours.keys() == ref.keys()
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_512_config_sets_rope_grid_and_predictor_sizes():
    cfg = sam2_config("hiera_s", "2.0", 512)
    layer = cfg.model.memory_attention.layer
    assert cfg.model.image_size == 512
    assert list(layer.self_attention.feat_sizes) == [32, 32]
    assert list(layer.cross_attention.feat_sizes) == [32, 32]
    assert feature_sizes(512) == [(128, 128), (64, 64), (32, 32)]


def test_tiny_at_512_predicts_with_matching_feature_sizes():
    predictor = sam2_image_predictor(build_sam2("tiny", image_size=512))
    predictor.set_image(_image())
    assert predictor._features["image_embed"].shape == (1, 256, 32, 32)
    masks, scores, _ = predictor.predict(point_coords=POINT[0], point_labels=POINT[1])
    assert masks.shape == (3, 100, 150) and scores.shape == (3,)


def test_save_and_strict_reload(tiny, tmp_path):
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny.state_dict()}, path)  # the official file layout
    again = build_sam2("tiny", checkpoint=path, image_size=256)
    assert weights_info(again).weights == "unverified"
    assert weights_info(again).model == "sam2.1/tiny@256"
    a, b = sam2_image_predictor(tiny), sam2_image_predictor(again)
    for p in (a, b):
        p.set_image(_image())
    la = a.predict(point_coords=POINT[0], point_labels=POINT[1], return_logits=True)[0]
    lb = b.predict(point_coords=POINT[0], point_labels=POINT[1], return_logits=True)[0]
    np.testing.assert_allclose(la, lb, atol=1e-5)


def test_checkpoint_for_another_variant_names_keys(tiny, tmp_path):
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny.state_dict()}, path)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        build_sam2("hiera_t", checkpoint=path, image_size=256)


def test_image_embeddings_hit_the_cache(tiny):
    cache = EmbeddingCache()
    encoder = EncoderId.of(tiny, 256)

    def encode(images):
        predictor = sam2_image_predictor(tiny)
        predictor.set_image_batch(images)
        feats = predictor._features
        return [{"image_embed": feats["image_embed"][i],
                 "high_res_feats": [f[i] for f in feats["high_res_feats"]]}
                for i in range(len(images))]

    first = cache.encode_batch([_image(seed=1), _image(seed=2)], encoder, encode)
    again = cache.encode_batch([_image(seed=2), _image(seed=1)], encoder, encode)
    assert cache.stats.encoder_passes == 1 and cache.stats.hits == 2
    assert torch.equal(first[0]["image_embed"], again[1]["image_embed"])


def test_video_predictor_from_in_memory_frames():
    video = build_sam2("tiny", image_size=256, video=True)
    assert video.fill_hole_area == 0 and video.device.type == "cpu"
    frames = [_image(120, 160, seed=i) for i in range(3)]
    state = init_video_state(video, frames)
    mask = np.zeros((120, 160), bool)
    mask[30:80, 40:100] = True
    video.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask)
    out = {i: logits for i, _, logits in video.propagate_in_video(state)}
    assert sorted(out) == [0, 1, 2]
    assert all(o.shape == (1, 1, 120, 160) for o in out.values())
    # the conditioning frame returns its input mask (used as output directly), up to the
    # 64x64 low-resolution round trip at the edges
    pred, ref = out[0][0, 0] > 0, torch.from_numpy(mask)
    assert (pred & ref).sum() / (pred | ref).sum() > 0.9


def test_in_memory_state_has_init_state_keys(tmp_path):
    from PIL import Image

    video = build_sam2("tiny", image_size=256, video=True)
    yy, xx = np.mgrid[0:120, 0:160]
    frames = [np.stack([xx + 20 * i, yy * 2, xx + yy], -1).clip(0, 255).astype(np.uint8)
              for i in range(3)]  # smooth frames: JPEG keeps them nearly intact
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i:05d}.jpg", quality=100, subsampling=0)
    ref = video.init_state(str(tmp_path))
    ours = init_video_state(video, frames)
    assert ours.keys() == ref.keys()
    assert ours["images"].shape == ref["images"].shape
    assert (ours["video_height"], ours["video_width"]) == (ref["video_height"], ref["video_width"])
    # same resize and normalisation: only JPEG rounding separates the two
    assert (ours["images"] - ref["images"]).abs().max() < 0.1


def test_frames_of_different_sizes_are_refused():
    video = build_sam2("tiny", image_size=256, video=True)
    with pytest.raises(ValueError, match="one size"):
        init_video_state(video, [_image(100, 100), _image(100, 120)])


@pytest.mark.slow
def test_fssam_setting_hiera_s_2_0_at_512_image_and_video():
    model = build_sam2("hiera_s", "2.0", image_size=512)
    predictor = sam2_image_predictor(model)
    predictor.set_image(_image(375, 500))
    assert predictor._features["image_embed"].shape == (1, 256, 32, 32)
    masks, _, _ = predictor.predict(point_coords=POINT[0], point_labels=POINT[1])
    assert masks.shape == (3, 375, 500)
    video = build_sam2("hiera_s", "2.0", image_size=512, video=True)
    state = init_video_state(video, [_image(375, 500, seed=i) for i in range(2)])
    mask = np.zeros((375, 500), bool)
    mask[100:200, 150:300] = True
    video.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask)
    assert len(list(video.propagate_in_video(state))) == 2


def test_set_image_cached_matches_set_image(tiny):
    from refseg_bench.models.sam2_models import set_image_cached

    cache, image = EmbeddingCache(), _image()
    plain, cached = sam2_image_predictor(tiny), sam2_image_predictor(tiny)
    plain.set_image(image)
    kw = {"point_coords": POINT[0], "point_labels": POINT[1], "return_logits": True}
    for _ in range(2):
        set_image_cached(cached, image, cache)
        np.testing.assert_allclose(cached.predict(**kw)[0], plain.predict(**kw)[0], atol=1e-5)
    assert cache.stats.encoder_passes == 1 and cache.stats.hits == 1
