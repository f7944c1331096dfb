"""Protocol properties every dataset's episodes must satisfy (issue: real datasets).

- test episodes use only the fold's novel classes, which are disjoint from its base classes;
- no novel-class pixel is foreground in a training episode (and, with BAM's filter, no
  training image contains a novel pixel at all);
- every support contains the episode class;
- the query is never its own support.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import Manifest, sample_episodes


def draw(ds, fold: int, split: str, protocol: str, shot: int = 1, n: int = 40,
         seed: int = 0) -> Manifest:
    p = load_protocol(protocol).for_dataset(ds.name)
    return sample_episodes(ds, fold, split, shot, n, seed, p)


def check_test_episodes(ds, fold: int, protocol: str, split: str = "val", shot: int = 1,
                        n: int = 40) -> Manifest:
    m = draw(ds, fold, split, protocol, shot, n)
    novel = set(ds.classes(fold, split))
    assert m.episodes, "no episodes drawn"
    for e in m.episodes:
        assert e.class_id in novel, f"episode class {e.class_id} is not novel in fold {fold}"
        assert e.query not in e.supports, f"query {e.query} is its own support"
        assert len(e.supports) == shot
        for s in e.supports:
            assert (ds.load_mask(s, e.class_id) == 1).any(), f"support {s} lacks {e.class_id}"
    return m


def check_train_episodes(ds, fold: int, protocol: str, truth: Callable[[str], np.ndarray],
                         bam: bool = False, shot: int = 1, n: int = 40,
                         test_split: str = "val") -> Manifest:
    """``truth(item)`` is the replica's class-id plane of ``item`` (0 background)."""
    base, novel = set(ds.classes(fold, "train")), set(ds.classes(fold, test_split))
    assert base and novel and not base & novel, "base and novel classes must be disjoint"
    m = draw(ds, fold, "train", protocol, shot, n)
    for e in m.episodes:
        assert e.class_id in base
        assert e.query not in e.supports
        for item in (e.query, *e.supports):
            fg = ds.load_mask(item, e.class_id) == 1
            labels = truth(item)
            assert not np.isin(labels[fg], sorted(novel)).any(), \
                f"{item}: a novel-class pixel is foreground of base class {e.class_id}"
            if bam:
                assert not np.isin(labels, sorted(novel)).any(), \
                    f"{item}: BAM's filter should have dropped this image (novel pixel)"
        for s in e.supports:
            assert (ds.load_mask(s, e.class_id) == 1).any()
    return m


def check_mask_values(ds, item: str, class_id: int) -> np.ndarray:
    """Mask contract: (H, W) uint8, values in {0, 1, 255}, same size as the image."""
    mask = ds.load_mask(item, class_id)
    image = ds.load_image(item)
    assert mask.dtype == np.uint8 and mask.ndim == 2
    assert image.dtype == np.uint8 and image.shape == (*mask.shape, 3)
    assert set(np.unique(mask)) <= {0, 1, 255}
    return mask
