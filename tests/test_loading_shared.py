"""Episodes leave a loader worker packed in one shared-memory buffer and arrive as the same
NumPy arrays: every byte, dtype and shape, read-only inputs included, masks or not."""

from __future__ import annotations

import io
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch.multiprocessing  # noqa: F401  (registers the shared-memory tensor reductions)

from refseg_bench.episodes import Annotation, Episode, EpisodeSpec
from refseg_bench.loading import LoadedEpisode, collate_shared


def _loaded(with_masks: bool) -> LoadedEpisode:
    rng = np.random.default_rng(0)
    query = rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)
    query.flags.writeable = False  # decoders may hand out read-only arrays
    support = rng.integers(0, 255, (5, 4, 3), dtype=np.uint8)
    mask = (rng.random((5, 4)) < 0.5).astype(np.uint8)
    ann = Annotation("box", raster=mask.astype(bool), boxes=np.array([[0, 0, 3, 4]], np.float32))
    spec = EpisodeSpec(3, 0, 1, "q", ("s",), 11)
    episode = Episode(spec, "cls", query, [support], [ann], [mask] if with_masks else None)
    label = rng.choice(np.array([0, 1, 255], np.uint8), (7, 9))
    return LoadedEpisode(spec, episode, label)


def _through_a_queue(obj):
    """What a DataLoader worker queue does: ForkingPickler out, pickle in."""
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return pickle.loads(buf.getvalue())


@pytest.mark.parametrize("with_masks", [True, False])
def test_shared_round_trip_keeps_every_array(with_masks):
    before = _loaded(with_masks)
    skipped = LoadedEpisode(before.spec, None, None, "empty support")
    after = _through_a_queue(collate_shared([before, skipped])).unpack()
    a, b = before.episode, after[0].episode
    pairs = [(a.query_image, b.query_image), (before.label, after[0].label),
             (a.support_images[0], b.support_images[0]),
             (a.annotations[0].raster, b.annotations[0].raster)]
    if with_masks:
        pairs.append((a.support_masks[0], b.support_masks[0]))
    else:
        assert b.support_masks is None
    for x, y in pairs:
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype and np.array_equal(x, y)
    np.testing.assert_array_equal(b.annotations[0].boxes, a.annotations[0].boxes)
    assert after[1].skip_reason == "empty support"


def test_a_small_dev_shm_falls_back_to_pickled_batches(monkeypatch):
    from refseg_bench import loading

    captured = {}

    class Spy:
        def __init__(self, dataset, **kw):
            captured.update(kw)

    monkeypatch.setattr(loading.torch.utils.data, "DataLoader", Spy)
    for free, expected in ((64 << 20, loading.collate), (8 << 30, loading.collate_shared)):
        monkeypatch.setattr(loading, "shm_free_bytes", lambda free=free: free)
        loading.episode_loader(None, [None] * 4, "mask", batch_size=2, num_workers=1)
        assert captured["collate_fn"] is expected
