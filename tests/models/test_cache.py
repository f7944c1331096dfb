"""Embedding cache: keys, LRU byte bound, disk persistence, batched misses, counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from refseg_bench.models.cache import (
    EmbeddingCache,
    EncoderId,
    image_sha256,
    nbytes,
    weights_fingerprint,
)
from refseg_bench.models.provenance import WeightsInfo, attach_weights_info


def _img(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _enc(model="m", weights="w", size=64) -> EncoderId:
    return EncoderId(model, weights, size)


def _fn(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32)).sum(-1)  # 8x8 float32: 256 bytes


def test_image_hash_depends_on_content_shape_and_dtype():
    a = _img(0)
    assert image_sha256(a) == image_sha256(a.copy())
    assert image_sha256(a) != image_sha256(_img(1))
    assert image_sha256(a) != image_sha256(a.reshape(4, 16, 3))
    assert image_sha256(a) != image_sha256(a.astype(np.int16))


def test_key_separates_model_weights_and_size():
    h = image_sha256(_img(0))
    keys = {_enc().key(h), _enc(model="n").key(h), _enc(weights="v").key(h),
            _enc(size=32).key(h), _enc(size=(64, 32)).key(h)}
    assert len(keys) == 5


def test_get_or_compute_counts_hits_and_passes():
    cache = EmbeddingCache()
    first = cache.get_or_compute(_img(0), _enc(), _fn)
    again = cache.get_or_compute(_img(0).copy(), _enc(), _fn)
    assert torch.equal(first, again)
    cache.get_or_compute(_img(0), _enc(size=32), _fn)
    s = cache.stats
    assert (s.hits, s.misses, s.encoder_passes, s.images_encoded) == (1, 2, 2, 2)


def test_lru_is_bounded_in_bytes():
    cache = EmbeddingCache(max_bytes=3 * 256)
    for i in range(5):
        cache.get_or_compute(_img(i), _enc(), _fn)
    assert len(cache) == 3 and cache.bytes_used == 3 * 256 and cache.stats.evictions == 2
    cache.get_or_compute(_img(2), _enc(), _fn)  # still there: a hit, and now most recent
    cache.get_or_compute(_img(5), _enc(), _fn)  # evicts 3, the least recently used
    cache.reset_stats()
    cache.get_or_compute(_img(2), _enc(), _fn)
    cache.get_or_compute(_img(3), _enc(), _fn)
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_batch_slices_do_not_pin_the_whole_batch():
    cache = EmbeddingCache()
    out = cache.encode_batch([_img(0), _img(1)], _enc(), lambda ims: torch.zeros(len(ims), 1000))
    assert nbytes(out[0]) == 4000 and cache.bytes_used == 8000


def test_encode_batch_encodes_only_distinct_misses_in_one_pass():
    cache = EmbeddingCache()
    cache.get_or_compute(_img(0), _enc(), _fn)
    seen = []

    def batch_fn(images):
        seen.append(len(images))
        return torch.stack([_fn(im) for im in images])

    out = cache.encode_batch([_img(0), _img(1), _img(2), _img(1)], _enc(), batch_fn)
    assert seen == [2]  # img 1 and 2, once each, one forward
    assert torch.equal(out[1], out[3]) and torch.equal(out[0], _fn(_img(0)))
    assert cache.stats.encoder_passes == 2 and cache.stats.images_encoded == 3


def test_encode_batch_checks_output_count():
    with pytest.raises(ValueError, match="1 outputs for 2 images"):
        EmbeddingCache().encode_batch([_img(0), _img(1)], _enc(), lambda ims: [torch.zeros(1)])


def test_disk_entries_survive_a_new_cache(tmp_path):
    value = {"embed": torch.ones(2, 3), "high_res": [torch.zeros(4), torch.arange(3)]}
    EmbeddingCache(disk_dir=tmp_path).get_or_compute(_img(0), _enc(), lambda im: value)
    fresh = EmbeddingCache(disk_dir=tmp_path)
    got = fresh.get_or_compute(_img(0), _enc(), lambda im: pytest.fail("should be on disk"))
    assert torch.equal(got["high_res"][1], torch.arange(3))
    assert fresh.stats.disk_hits == 1 and fresh.stats.encoder_passes == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_fingerprint_uses_checkpoint_hash_or_parameters():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    assert weights_fingerprint(a) != weights_fingerprint(b)
    c = nn.Linear(3, 3)
    c.load_state_dict(a.state_dict())
    assert weights_fingerprint(c) == weights_fingerprint(a)
    d = nn.Linear(3, 3)
    attach_weights_info(d, WeightsInfo("x", "official", "f.pth", "ab" * 32))
    assert weights_fingerprint(d) == "ab" * 32
    assert EncoderId.of(d, 64) == EncoderId("x", "ab" * 32, 64)
