import json

import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, check_train_episodes
from replica_layouts import make_coco

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.coco import Coco20i

FOLD0_INTERLEAVED = ["person", "airplane", "boat", "parking meter", "dog", "elephant",
                     "backpack", "suitcase", "sports ball", "skateboard", "wine glass", "spoon",
                     "sandwich", "hot dog", "chair", "dining table", "mouse", "microwave",
                     "refrigerator", "scissors"]  # PROTOCOLS.md §3.2, verbatim
FOLD3_CONTIGUOUS_ENDS = ("dining table", "toothbrush")


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def coco(replica, tmp_path_factory):
    ds = Coco20i(replica.root, cache_dir=str(tmp_path_factory.mktemp("cache")))
    ds.prepare(log=lambda s: None)
    return ds


def test_fold_splits_match_protocols(replica, tmp_path):
    ds = Coco20i(replica.root, cache_dir=str(tmp_path))
    assert [ds.class_name(c) for c in ds.classes(0, "val")] == FOLD0_INTERLEAVED
    pan = Coco20i(replica.root, class_split="contiguous", cache_dir=str(tmp_path))
    novel = pan.classes(3, "val")
    assert novel == list(range(61, 81))
    assert (pan.class_name(novel[0]), pan.class_name(novel[-1])) == FOLD3_CONTIGUOUS_ENDS
    for d in (ds, pan):
        assert all(not set(d.classes(f, "train")) & set(d.classes(f, "val")) for f in range(4))
        assert sorted(c for f in range(4) for c in d.classes(f, "val")) == list(range(1, 81))


def test_lists_follow_the_2048_rule_on_instance_unions(coco, replica):
    for fold in (0, 3):
        for split, subset in (("val", "val2014"), ("train", "train2014")):
            for c in coco.classes(fold, split):
                want = sorted(i for i, lab in replica.labels.items() if i.startswith(subset)
                              and (lab == c).sum() >= 2048)
                assert sorted(coco.items(fold, split, c)) == want


def test_instance_masks_union_with_crowd_and_rle(coco, replica):
    for item, lab in replica.labels.items():
        for c in np.unique(lab[lab > 0]):
            mask = coco.load_mask(item, int(c))
            # Rendered truth paints the later object over the earlier; the loader marks
            # the shared pixels 255 instead, so they agree wherever the mask is decided.
            decided = mask != 255
            assert np.array_equal((mask == 1)[decided], (lab == c)[decided]), item
    crowd = "train2014/COCO_train2014_000001000041"  # class 4 + a crowd RLE of class 5
    assert (coco.load_mask(crowd, 5) == 1).sum() == 25 * 45


def test_overlapping_instances_are_ignored_not_foreground(replica, tmp_path):
    item = "train2014/COCO_train2014_000001000011"  # class 1 overlapped by a class-2 RLE
    ign = Coco20i(replica.root, cache_dir=str(tmp_path / "a"))
    uni = Coco20i(replica.root, overlap="union", cache_dir=str(tmp_path / "b"))
    shared = ign.load_mask(item, 1) == 255
    assert shared.sum() == 5 * 25
    assert np.array_equal(shared, ign.load_mask(item, 2) == 255)
    assert (uni.load_mask(item, 1)[shared] == 1).all()  # PANet's plain union
    assert (uni.load_mask(item, 2)[shared] == 1).all()


def test_png_masks_give_the_same_lists(replica, coco, tmp_path):
    png = Coco20i(replica.root, masks="png", cache_dir=str(tmp_path))
    for fold in range(4):
        assert png.query_items(fold, "val") == coco.query_items(fold, "val")
    item = png.query_items(0, "val")[0]
    assert np.array_equal(check_mask_values(png, item, 1) == 1, replica.labels[item] == 1)


def test_query_order_follows_the_bam_list(coco, replica, tmp_path):
    head = [f"val2014/COCO_val2014_{n:012d}" for n in (553141, 20925, 470885)]
    assert coco.query_items(0, "val")[:3] == head
    by_name = Coco20i(replica.root, query_order="sorted", cache_dir=str(tmp_path))
    assert by_name.query_items(0, "val") == sorted(coco.query_items(0, "val"))


@pytest.mark.parametrize("fold", range(4))
@pytest.mark.parametrize("protocol", ["hsnet", "pfenet", "bam", "vrp-sam", "matcher"])
def test_protocol_properties(replica, coco, tmp_path, fold, protocol):
    from refseg_bench.protocols import load_protocol

    opts = load_protocol(protocol).for_dataset("coco20i").dataset_args
    ds = coco if opts.get("train_filter", "none") == "none" else \
        Coco20i(replica.root, cache_dir=coco.cache_dir, **opts)
    check_test_episodes(ds, fold, protocol, n=30)
    check_train_episodes(ds, fold, protocol, replica.labels.__getitem__, n=30,
                         bam=opts.get("train_filter") == "bam")


def _annotations_only(replica, tmp_path):
    """A copy of the replica's annotations with empty image folders (errors come first)."""
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(replica.root / "annotations", root / "annotations",
                    ignore=shutil.ignore_patterns("*.png"))
    (root / "train2014").mkdir()
    (root / "val2014").mkdir()
    return root


def test_corrupt_annotation_json_is_a_clear_error(replica, tmp_path):
    root = _annotations_only(replica, tmp_path)
    path = root / "annotations" / "instances_val2014.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated download
    with pytest.raises(DatasetError) as err:
        Coco20i(root, cache_dir=str(tmp_path / "c")).query_items(0, "val")
    assert str(path) in str(err.value) and "line 1 column" in str(err.value)


def test_foreign_categories_are_refused(replica, tmp_path):
    root = _annotations_only(replica, tmp_path)
    path = root / "annotations" / "instances_val2014.json"
    doc = json.loads(path.read_text())
    doc["categories"][0]["name"] = "human"
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="categories differ from COCO's 80"):
        Coco20i(root, cache_dir=str(tmp_path / "c")).query_items(0, "val")


def test_wrong_root_and_missing_json(replica, tmp_path):
    with pytest.raises(DatasetError, match=r"(?s)Expected layout.*instances_val2014\.json"):
        Coco20i(tmp_path).query_items(0, "val")
    (tmp_path / "train2014").mkdir()
    (tmp_path / "val2014").mkdir()
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DatasetError, match=r"annotation files missing:\n.*instances_"):
        Coco20i(tmp_path, cache_dir=str(tmp_path / "c")).query_items(0, "val")
