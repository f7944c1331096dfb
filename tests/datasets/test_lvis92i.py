import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, check_train_episodes, draw
from replica_layouts import make_lvis

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.lvis import Lvis92i, lvis_item


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return make_lvis(tmp_path_factory.mktemp("lvis"), n_cats=40)


@pytest.fixture(scope="module")
def lvis(replica, tmp_path_factory):
    ds = Lvis92i(replica.root, cache_dir=str(tmp_path_factory.mktemp("cache")))
    ds.prepare(log=lambda s: None)
    return ds


def test_item_from_coco_url():
    img = {"coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg"}
    assert lvis_item(img) == "val2017/000000397133"


def test_ten_interleaved_folds(lvis):
    # Matcher keeps the categories with more than `shot` (1) val images.
    kept = sorted(c for c, v in lvis.images_by_class("val").items() if len(v) > 1)
    n = len(kept) // 10
    folds = [lvis.classes(f, "val") for f in range(10)]
    for f in range(10):
        assert folds[f] == sorted(kept[f + 10 * v] for v in range(n))
        assert not set(folds[f]) & set(lvis.classes(f, "train"))
    assert len({c for fold in folds for c in fold}) == 10 * n
    assert lvis.class_name(1) == "thing_001"


def test_fold_shot_changes_which_classes_are_kept(replica, lvis, tmp_path):
    three = Lvis92i(replica.root, fold_shot=3, cache_dir=str(tmp_path))
    novel = [c for f in range(10) for c in three.classes(f, "val")]
    assert len(novel) == 20 and all(c % 2 == 1 for c in novel)  # only the 6-image ones
    assert len([c for f in range(10) for c in lvis.classes(f, "val")]) == 40


def test_masks_are_class_unions_and_images_come_from_both_folders(lvis, replica):
    items = lvis.query_items(0, "val")
    assert {i.split("/")[0] for i in items} == {"train2017", "val2017"}
    for item in items[:10]:
        for c in lvis.item_classes(0, "val", item):
            mask = check_mask_values(lvis, item, c)
            assert np.array_equal(mask == 1, replica.labels[item] == c)


@pytest.mark.parametrize("fold", [0, 7])
def test_protocol_properties(lvis, replica, fold):
    m = check_test_episodes(lvis, fold, "matcher", n=46)
    classes = lvis.classes(fold, "val")
    assert [e.class_id for e in m.episodes] == [classes[i % len(classes)] for i in range(46)]
    check_train_episodes(lvis, fold, "matcher", replica.labels.__getitem__)


def test_matcher_preset_gives_2300_round_robin_episodes(lvis):
    assert draw(lvis, 0, "val", "matcher", n=2300).header["n_episodes"] == 2300


def test_wrong_root_and_corrupt_json(replica, tmp_path):
    with pytest.raises(DatasetError, match=r"(?s)Expected layout.*lvis_v1_val\.json"):
        Lvis92i(tmp_path).query_items(0, "val")
    (tmp_path / "lvis_v1_val.json").write_text('{"images": [{"id": 1,')
    (tmp_path / "lvis_v1_train.json").write_text(
        '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    with pytest.raises(DatasetError, match=r"corrupt JSON in .*lvis_v1_val\.json"):
        Lvis92i(tmp_path, cache_dir=str(tmp_path / "c")).query_items(0, "val")
