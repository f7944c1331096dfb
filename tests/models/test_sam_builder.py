"""SAM builder: official architecture key names, tiny config, strict reload, provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.provenance import weights_info
from refseg_bench.models.sam import build_sam, encode_sam_images, sam_input


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_sam("tiny", image_size=256)


def _image(h=300, w=200, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_vit_b_matches_official_builder_keys_and_shapes():
    from segment_anything import sam_model_registry

    ours = build_sam("vit_b").state_dict()
    ref = sam_model_registry["vit_b"]().state_dict()
    assert ours.keys() == ref.keys()
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_tiny_encodes_batch_at_chosen_size(tiny):
    emb = encode_sam_images(tiny, [_image(), _image(120, 256, 1)])
    assert emb.shape == (2, 64, 16, 16) and emb.dtype == torch.float32
    assert weights_info(tiny).weights == "random"
    assert weights_info(tiny).model == "sam/tiny@256"


def test_preprocessing_resizes_longest_side_and_pads(tiny):
    x = sam_input(tiny, _image(300, 150))
    assert x.shape == (1, 3, 256, 256)
    assert torch.all(x[..., :, 128:] == 0)  # padded right of the 128-wide resized image


def test_save_and_strict_reload_reproduces_embeddings(tiny, tmp_path):
    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny.state_dict(), path)
    again = build_sam("tiny", path, image_size=256)
    info = weights_info(again)
    assert info.weights == "unverified" and info.checkpoint == str(path)
    assert len(info.sha256) == 64
    im = _image()
    torch.testing.assert_close(encode_sam_images(again, [im]), encode_sam_images(tiny, [im]))


def test_wrong_image_size_checkpoint_names_the_shape_mismatch(tiny, tmp_path):
    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(CheckpointError, match="wrong shapes.*pos_embed"):
        build_sam("tiny", path, image_size=512)


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="vit_h"):
        build_sam("vit_x")


def test_sam_embeddings_hit_the_cache(tiny):
    from refseg_bench.models.cache import EmbeddingCache, EncoderId

    cache = EmbeddingCache()
    enc = EncoderId.of(tiny, 256)
    a = cache.get_or_compute(_image(), enc, lambda im: encode_sam_images(tiny, [im])[0])
    b = cache.get_or_compute(_image(), enc, lambda im: encode_sam_images(tiny, [im])[0])
    assert a is b and cache.stats.encoder_passes == 1 and cache.stats.hits == 1
    assert enc.weights.startswith("params:")  # random weights: fingerprinted by value


def test_set_image_cached_matches_set_image(tiny):
    from segment_anything import SamPredictor

    from refseg_bench.models.cache import EmbeddingCache
    from refseg_bench.models.sam import set_image_cached

    cache, image = EmbeddingCache(), _image(300, 200)
    plain, cached = SamPredictor(tiny), SamPredictor(tiny)
    plain.set_image(image)
    for _ in range(2):
        set_image_cached(cached, image, cache)
        assert cached.input_size == plain.input_size and cached.original_size == (300, 200)
        torch.testing.assert_close(cached.features, plain.features, atol=1e-5, rtol=1e-5)
        kw = {"point_coords": np.array([[50.0, 80.0]]), "point_labels": np.array([1]),
              "return_logits": True}
        np.testing.assert_allclose(cached.predict(**kw)[0], plain.predict(**kw)[0], atol=1e-4)
    assert cache.stats.encoder_passes == 1 and cache.stats.hits == 1
