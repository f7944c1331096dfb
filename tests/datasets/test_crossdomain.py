import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, draw
from replica_layouts import isic_ids, make_deepglobe, make_isic, make_lung

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.crossdomain import ChestXray, Deepglobe, Isic2018
from refseg_bench.datasets.layout import read_lines


def test_shipped_isic_classes_match_protocols():
    rows = [line.split(",") for line in read_lines("pkg:isic2018/class_id.csv")[1:]]
    counts = {name: sum(1 for _, n in rows if n == name) for _, name in rows}
    assert counts == {"nevus": 1867, "melanoma": 519, "seborrheic_keratosis": 208}


def test_deepglobe(tmp_path):
    rep = make_deepglobe(tmp_path)
    ds = Deepglobe(rep.root, cache_dir=str(tmp_path / "c"))
    assert ds.classes(0, "test") == list(range(1, 7)) == ds.classes(0, "val")
    assert len(ds.query_items(0, "test")) == 24
    m = check_test_episodes(ds, 0, "patnet-cdfss", split="test", shot=1, n=600)
    assert len(m.episodes) == 600
    assert [e.class_id for e in m.episodes[:12]] == [1, 2, 3, 4, 5, 6] * 2  # idx mod 6
    for item in ("1/10452_sat_00", "4/10452_sat_00"):  # one tile, two class masks
        c = int(item[0])
        mask = check_mask_values(ds, item, c)
        assert np.array_equal(mask, (rep.labels[item] >= 128).astype(np.uint8))
    assert not ds.load_mask("1/10452_sat_00", 4).any()


@pytest.mark.parametrize("patnet_folders", [True, False])
def test_isic_both_layouts(tmp_path, patnet_folders):
    rep = make_isic(tmp_path, patnet_folders)
    ds = Isic2018(rep.root, cache_dir=str(tmp_path / "c"))
    assert ds.class_names == ["nevus", "melanoma", "seborrheic_keratosis"]
    for c, ids in isic_ids().items():
        assert ds.items(0, "test", c) == ids
        mask = check_mask_values(ds, ids[0], c)
        assert np.array_equal(mask, (rep.labels[ids[0]] >= 128).astype(np.uint8))
        assert not ds.load_mask(ids[0], c % 3 + 1).any()
    m = check_test_episodes(ds, 0, "patnet-cdfss", split="test", shot=2, n=30)
    assert [e.class_id for e in m.episodes[:6]] == [1, 2, 3, 1, 2, 3]


def test_chest_xray(tmp_path):
    rep = make_lung(tmp_path)
    ds = ChestXray(rep.root, cache_dir=str(tmp_path / "c"))
    items = ds.query_items(0, "test")
    assert items == sorted(rep.labels)  # the radiograph without a mask is not an item
    img = ds.load_image(items[1])
    assert img.shape == (64, 64, 3)  # greyscale radiograph read as RGB
    assert np.array_equal(check_mask_values(ds, items[1], 1),
                          (rep.labels[items[1]] >= 128).astype(np.uint8))
    check_test_episodes(ds, 0, "patnet-cdfss", split="test", shot=1, n=20)


@pytest.mark.parametrize("cls, make", [(Deepglobe, make_deepglobe),
                                       (ChestXray, make_lung)])
def test_test_only_and_wrong_root(tmp_path, cls, make):
    rep = make(tmp_path)
    ds = cls(rep.root, cache_dir=str(tmp_path / "c"))
    with pytest.raises(DatasetError, match="test-only"):
        ds.classes(0, "train")
    with pytest.raises(DatasetError, match="Expected layout"):
        cls(tmp_path / "elsewhere").query_items(0, "test")
    assert draw(ds, 0, "test", "hsnet", n=5).header["n_episodes"] == 5


def test_a_class_without_images_is_an_error(tmp_path):
    rep = make_deepglobe(tmp_path)
    for p in (rep.root / "Deepglobe" / "3" / "test" / "origin").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="no images for class.*rangeland"):
        Deepglobe(rep.root, cache_dir=str(tmp_path / "c")).query_items(0, "test")
