
import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, draw
from PIL import Image
from replica_layouts import make_perseg

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.perseg import PerSeg


def test_replica_one_fold_every_object_a_class(tmp_path):
    rep = make_perseg(tmp_path)
    ds = PerSeg(rep.root, cache_dir=str(tmp_path / "c"))
    assert ds.n_folds == 1 and ds.class_names == ["backpack", "cat", "dog2"]
    assert ds.classes(0, "test") == [1, 2, 3] == ds.classes(0, "val")
    with pytest.raises(DatasetError, match="test-only"):
        ds.items(0, "train", 1)
    assert ds.items(0, "test", 2) == ["cat/00", "cat/01", "cat/02", "cat/03"]
    mask = check_mask_values(ds, "cat/01", 2)
    assert np.array_equal(mask, rep.labels["cat/01"])
    assert not ds.load_mask("cat/01", 1).any()


def test_persam_protocol_reference_00_every_other_image_once(tmp_path):
    rep = make_perseg(tmp_path)
    ds = PerSeg(rep.root, cache_dir=str(tmp_path / "c"))
    m = check_test_episodes(ds, 0, "persam", split="test", shot=1, n=1000)
    assert [(e.query, e.supports) for e in m.episodes] == [
        (f"{o}/{i:02d}", (f"{o}/00",)) for o in ("backpack", "cat", "dog2") for i in (1, 2, 3)]
    assert draw(ds, 0, "test", "persam", n=1000, seed=5).sha256 != m.sha256  # header only
    assert [e.query for e in draw(ds, 0, "test", "persam", seed=5).episodes] == \
        [e.query for e in m.episodes]  # no randomness in the episodes themselves


def test_real_samples(tmp_path, real_samples):
    real = real_samples("perseg")
    ds = PerSeg(real, cache_dir=str(tmp_path))
    assert ds.class_names == ["cat", "colorful_sneaker", "duck_toy"]
    for c in (1, 2, 3):
        for item in ds.items(0, "test", c):
            mask = check_mask_values(ds, item, c)
            raw = np.asarray(Image.open(real / "Annotations" / f"{item}.png"))
            assert np.array_equal(mask, (raw > 0).astype(np.uint8)) and mask.any()
    m = check_test_episodes(ds, 0, "persam", split="test", shot=1, n=100)
    assert len(m.episodes) == 6 and all(e.supports[0].endswith("/00") for e in m.episodes)


def test_wrong_root(tmp_path):
    with pytest.raises(DatasetError, match=r"(?s)Expected layout.*Annotations/<object>"):
        PerSeg(tmp_path).query_items(0, "test")
