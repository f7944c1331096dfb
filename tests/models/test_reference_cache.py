"""The reference cache: content keys, LRU bound, off switch."""

import numpy as np
import pytest
import torch

from refseg_bench.episodes import Annotation
from refseg_bench.models.reference_cache import ReferenceCache, reference_key


def _refs(seed=0, k=2):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(k)]
    anns = [Annotation("mask", raster=rng.random((20, 30)) < 0.3) for _ in range(k)]
    return images, anns


def test_key_depends_on_content_order_state_and_masks():
    images, anns = _refs()
    key = reference_key("m/ref", "s", images, anns)
    assert key == reference_key("m/ref", "s", [im.copy() for im in images], anns)
    assert key != reference_key("m/ref", "t", images, anns)
    assert key != reference_key("other", "s", images, anns)
    assert key != reference_key("m/ref", "s", images[::-1], anns[::-1])
    moved = Annotation("mask", raster=anns[0].raster, points=np.ones((1, 2), np.float32))
    assert key != reference_key("m/ref", "s", images, [moved, anns[1]])
    boxed = Annotation("box", raster=anns[0].raster)
    assert key != reference_key("m/ref", "s", images, [boxed, anns[1]])
    masks = [a.raster.astype(np.uint8) for a in anns]
    assert key != reference_key("m/ref", "s", images, anns, masks)
    with pytest.raises(ValueError, match="one annotation"):
        reference_key("m/ref", "s", images, anns[:1])


def test_hits_misses_lru_bound_and_off_switch():
    cache = ReferenceCache(max_bytes=2 * 4096)
    calls = []

    def make(i):
        calls.append(i)
        return {"w": torch.full((1024,), float(i)), "n": i}

    first = cache.get_or_compute("a", lambda: make(0))
    assert cache.get_or_compute("a", lambda: make(1)) is first and calls == [0]
    cache.get_or_compute("b", lambda: make(2))
    cache.get_or_compute("c", lambda: make(3))  # over 8 KiB: "a" (least recent) goes
    assert cache.stats.evictions == 1 and len(cache) == 2
    cache.get_or_compute("a", lambda: make(4))
    assert calls == [0, 2, 3, 4]
    assert (cache.stats.hits, cache.stats.misses) == (1, 4)
    off = ReferenceCache(max_bytes=0)
    off.get_or_compute("a", lambda: make(5))
    off.get_or_compute("a", lambda: make(6))
    assert calls[-2:] == [5, 6] and len(off) == 0
    with pytest.raises(ValueError):
        ReferenceCache(max_bytes=-1)


def test_cached_values_own_their_storage():
    cache = ReferenceCache()
    batch = torch.arange(12.0).reshape(3, 4)
    value = cache.get_or_compute("k", lambda: batch[1])
    assert value.untyped_storage().nbytes() == 4 * 4
    batch[1] = -1
    assert value.tolist() == [4.0, 5.0, 6.0, 7.0]
