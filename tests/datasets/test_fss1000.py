
import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, check_train_episodes, draw
from PIL import Image
from replica_layouts import make_fss

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.fss import Fss1000
from refseg_bench.datasets.layout import read_lines

# Real class names from each of HSNet's split files (apple and basketball are training
# classes; the test names include an apostrophe, as the real folders do).
TRN = ["apple", "basketball", "pineapple"]
VAL = sorted(read_lines("pkg:fss1000/val.txt"))[:2]
TEST = ["abe's_flyingfish", *sorted(read_lines("pkg:fss1000/test.txt"))[-2:]]


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return make_fss(tmp_path_factory.mktemp("fss"), TRN + VAL + TEST)


def _ds(rep, tmp_path, **kw):
    return Fss1000(rep.root, missing_classes="skip", cache_dir=str(tmp_path), **kw)


def test_shipped_split_is_520_240_240_and_disjoint():
    splits = {s: read_lines(f"pkg:fss1000/{s}.txt") for s in ("trn", "val", "test")}
    assert [len(v) for v in splits.values()] == [520, 240, 240]
    assert len(set().union(*splits.values())) == 1000
    for name, split in ((TRN, "trn"), (VAL, "val"), (TEST, "test")):
        assert set(name) <= set(splits[split])


def test_class_ids_follow_hsnet(replica, tmp_path):
    ds = _ds(replica, tmp_path)
    assert len(ds.class_names) == 1000
    test_ids = ds.classes(0, "test")
    assert all(761 <= c <= 1000 for c in test_ids) and len(test_ids) == len(TEST)
    assert all(521 <= c <= 760 for c in ds.classes(0, "val"))
    assert all(1 <= c <= 520 for c in ds.classes(0, "train"))
    # ids are 1 + HSNet's 0-based index: sorted names within the split, offset 760 for test
    assert ds.class_name(test_ids[0]) == sorted(read_lines("pkg:fss1000/test.txt"))[
        test_ids[0] - 761]


def test_every_test_image_is_a_query_once(replica, tmp_path):
    ds = _ds(replica, tmp_path)
    m = draw(ds, 0, "test", "hsnet", n=2400)
    assert len(m.episodes) == 3 * 10  # 2400 on the full dataset: 240 classes x 10
    assert sorted(e.query for e in m.episodes) == sorted(
        f"{n}/{i}" for n in TEST for i in range(1, 11))
    assert ds.items(0, "test", ds.classes(0, "test")[0])[:3] == \
        [f"{ds.class_name(ds.classes(0, 'test')[0])}/{i}" for i in (1, 2, 3)]  # 2 before 10


@pytest.mark.parametrize("protocol", ["hsnet", "matcher", "patnet-cdfss"])
def test_protocol_properties(replica, tmp_path, protocol):
    ds = _ds(replica, tmp_path)
    check_test_episodes(ds, 0, protocol, split="test", shot=5, n=30)
    assert not set(ds.classes(0, "test")) & set(ds.classes(0, "train"))

    def truth(item):  # the class id where the mask is foreground
        return (replica.labels[item] >= 128) * ds.class_names.index(item.split("/")[0]) + 1

    check_train_episodes(ds, 0, protocol, truth, test_split="test")


def test_masks_binarised_at_128(replica, tmp_path):
    ds = _ds(replica, tmp_path)
    item = f"{TEST[0]}/3"
    mask = check_mask_values(ds, item, ds.class_names.index(TEST[0]) + 1)
    assert np.array_equal(mask, (replica.labels[item] >= 128).astype(np.uint8))
    other = ds.class_names.index(TEST[1]) + 1
    assert not ds.load_mask(item, other).any()


def test_missing_class_folders_are_named(replica, tmp_path):
    ds = Fss1000(replica.root, cache_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"(?s)237 test class folder\(s\) missing.*"
                                            r"e\.g\. accordion.*missing_classes=skip"):
        ds.query_items(0, "test")


def test_wrong_root_prints_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"(?s)Expected layout.*<class>/<n>\.jpg"):
        Fss1000(tmp_path).query_items(0, "test")


def test_real_samples_every_encoding(tmp_path, real_samples):
    """apple, basketball: RGBA anti-aliased masks; eiffel_tower: RGB 0/1 masks."""
    real = real_samples("fss1000")
    ds = Fss1000(real, class_split="disk", cache_dir=str(tmp_path))
    assert ds.class_names == ["apple", "basketball", "eiffel_tower"]
    assert [len(ds.items(0, "test", c)) for c in (1, 2, 3)] == [10, 10, 5]
    for c in (1, 2, 3):
        for item in ds.items(0, "test", c):
            fg = check_mask_values(ds, item, c)
            raw = np.asarray(Image.open(real / f"{item}.png"))[..., 0]  # README's rule:
            want = raw > 0 if c == 3 else raw > 127  # 0/1 for eiffel_tower, else > 127
            assert np.array_equal(fg == 1, want) and 0 < fg.mean() < 0.9, item
    check_test_episodes(ds, 0, "hsnet", split="test", shot=1, n=25)


def test_real_samples_with_hsnet_split(tmp_path, real_samples):
    real = real_samples("fss1000")
    ds = Fss1000(real, missing_classes="skip", cache_dir=str(tmp_path))
    names = [ds.class_name(c) for c in ds.classes(0, "train")]
    assert names == ["apple", "basketball"]  # both are HSNet training classes
    assert ds.classes(0, "test") == []  # eiffel_tower is in none of HSNet's lists
