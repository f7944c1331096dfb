from collections import Counter

import numpy as np
import pytest
from episode_checks import check_mask_values, check_test_episodes, check_train_episodes
from PIL import Image
from replica_layouts import make_pascal

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.layout import read_lines
from refseg_bench.datasets.pascal import Pascal5i
from refseg_bench.errors import ConfigError


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return make_pascal(tmp_path_factory.mktemp("pascal"))


def _hsnet(rep, **kw):
    return Pascal5i(rep.root, lists="hsnet", split_files=rep.extra["split_files"], **kw)


def _pfenet(rep, **kw):
    return Pascal5i(rep.root, lists="pfenet", train_pool=rep.extra["train_pool"], **kw)


def test_replica_is_the_real_encoding(replica):
    png = replica.extra["base"] / "SegmentationClassAug" / "2008_000100.png"
    assert Image.open(png).mode == "P"  # palette PNG, as SegmentationClassAug ships


def test_shipped_hsnet_lists_match_protocols_counts():
    val = [read_lines(f"pkg:pascal5i/hsnet/val/fold{i}.txt") for i in range(4)]
    assert [len(v) for v in val] == [346, 451, 725, 346]
    assert [len({p.split("__")[0] for p in v}) for v in val] == [345, 433, 587, 326]
    trn0 = [p for j in (1, 2, 3) for p in read_lines(f"pkg:pascal5i/hsnet/trn/fold{j}.txt")]
    assert len(trn0) == 11394 and len({p.split("__")[0] for p in trn0}) == 8450
    assert len(read_lines("pkg:pascal5i/pfenet/voc_sbd_merge_noduplicate.txt")) == 5953
    assert len(read_lines("pkg:pascal5i/pfenet/val.txt")) == 1449


@pytest.mark.parametrize("fold", range(4))
def test_fold_classes(replica, fold):
    ds = _hsnet(replica)
    assert ds.classes(fold, "val") == list(range(5 * fold + 1, 5 * fold + 6))
    assert ds.classes(fold, "test") == ds.classes(fold, "val")  # HSNet: test reads val
    assert sorted(ds.classes(fold, "train") + ds.classes(fold, "val")) == list(range(1, 21))
    assert ds.class_name(5 * fold + 1) == ["aeroplane", "bus", "diningtable",
                                           "pottedplant"][fold]


def test_hsnet_pairs_and_union_of_other_folds(replica, tmp_path):
    ds = _hsnet(replica, cache_dir=str(tmp_path))
    files = replica.extra["split_files"]
    lines = read_lines(f"{files}/val/fold1.txt")
    assert [f"{i}__{c:02d}" for i, c in ds.pairs(1, "val")] == lines
    trn = [p for j in (0, 2, 3) for p in read_lines(f"{files}/trn/fold{j}.txt")]
    assert [f"{i}__{c:02d}" for i, c in ds.pairs(1, "train")] == trn
    for item, c in ds.pairs(1, "val"):
        assert item in ds.items(1, "val", c)
        assert c in ds.item_classes(1, "val", item)


def test_pfenet_2048_rule(replica, tmp_path):
    ds = _pfenet(replica, cache_dir=str(tmp_path))
    labels = replica.labels
    for fold in range(4):
        for split in ("train", "val"):
            pool = replica.extra["pools"][split]
            for c in ds.classes(fold, split):
                want = [i for i in pool if (labels[i] == c).sum() >= 2048]
                assert ds.items(fold, split, c) == want
            for q in ds.query_items(fold, split):
                present = [c for c in ds.classes(fold, split) if (labels[q] == c).any()]
                assert ds.item_classes(fold, split, q) == present  # any size, for the class draw
    # A small object is present in its image but the image is not listed for it.
    small = [(i, c) for i in replica.extra["pools"]["train"] for c in range(1, 21)
             if 0 < (labels[i] == c).sum() < 2048]
    assert small
    i, c = small[0]
    fold = (c - 1) // 5
    base_fold = (fold + 1) % 4  # a fold where c is a base class
    assert i not in ds.items(base_fold, "train", c)


@pytest.mark.parametrize("lists", ["hsnet", "pfenet"])
def test_bam_filter_drops_training_images_with_novel_pixels(replica, tmp_path, lists):
    make = _hsnet if lists == "hsnet" else _pfenet
    plain, bam = make(replica, cache_dir=str(tmp_path / "a")), \
        make(replica, train_filter="bam", cache_dir=str(tmp_path / "b"))
    for fold in range(4):
        novel = plain.classes(fold, "val")
        kept = bam.query_items(fold, "train")
        assert set(kept) < set(plain.query_items(fold, "train"))
        for item in kept:
            assert not np.isin(replica.labels[item], novel).any()
        dropped = set(plain.query_items(fold, "train")) - set(kept)
        assert all(np.isin(replica.labels[i], novel).any() for i in dropped)


@pytest.mark.parametrize("fold", range(4))
@pytest.mark.parametrize("protocol", ["hsnet", "pfenet", "bam", "vrp-sam", "matcher"])
def test_protocol_properties(replica, tmp_path, fold, protocol):
    from refseg_bench.protocols import load_protocol

    opts = load_protocol(protocol).for_dataset("pascal5i").dataset_args
    make = _hsnet if opts.get("lists", "hsnet") == "hsnet" else _pfenet
    ds = make(replica, train_filter=opts.get("train_filter", "none"),
              cache_dir=str(tmp_path))
    check_test_episodes(ds, fold, protocol, shot=1)
    check_test_episodes(ds, fold, protocol, shot=2, n=10)
    check_train_episodes(ds, fold, protocol, replica.labels.__getitem__,
                         bam=opts.get("train_filter") == "bam")


def test_hsnet_preset_cycles_pairs(replica, tmp_path):
    from episode_checks import draw

    ds = _hsnet(replica, cache_dir=str(tmp_path))
    m = draw(ds, 0, "val", "hsnet", n=25)
    pairs = ds.pairs(0, "val")
    assert [(e.query, e.class_id) for e in m.episodes] == [pairs[i % len(pairs)]
                                                            for i in range(25)]


def test_mask_keeps_the_255_boundary(replica):
    ds = _hsnet(replica)
    item = "2008_000201"
    mask = check_mask_values(ds, item, 2)
    lab = replica.labels[item]
    assert np.array_equal(mask == 1, lab == 2)
    assert np.array_equal(mask == 255, lab == 255) and (mask == 255).any()
    assert not (check_mask_values(ds, item, 7) == 1).any()  # absent class: background


@pytest.mark.parametrize("sub", ["", "VOC2012", "VOCdevkit/VOC2012"])
def test_root_may_point_at_any_level(tmp_path, sub):
    rep = make_pascal(tmp_path, sub=sub)
    for root in {rep.root, rep.extra["base"]}:
        ds = Pascal5i(root, split_files=rep.extra["split_files"], cache_dir=str(tmp_path / "c"))
        assert ds.base == rep.extra["base"]


def test_wrong_root_prints_the_layout(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetError) as err:
        Pascal5i(tmp_path).query_items(0, "val")
    msg = str(err.value)
    assert "Expected layout" in msg and "SegmentationClassAug/<id>.png" in msg
    assert "something/" in msg  # says what it found instead


def test_missing_files_are_named(tmp_path):
    rep = make_pascal(tmp_path)
    (rep.extra["base"] / "JPEGImages" / "2008_000100.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 images missing:\n.*2008_000100\.jpg"):
        _hsnet(rep, cache_dir=str(tmp_path / "c")).query_items(0, "val")
    # The shipped lists name real VOC ids: a partial copy is reported, not silently used.
    with pytest.raises(DatasetError, match=r"(?s)images missing:.*2007_000033\.jpg"):
        Pascal5i(rep.root, cache_dir=str(tmp_path / "d")).query_items(0, "val")


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="lists must be one of hsnet, pfenet"):
        Pascal5i(tmp_path, lists="pfnet")
    with pytest.raises(ConfigError, match="train_filter"):
        Pascal5i(tmp_path, train_filter="yes")


def test_lists_are_cached_and_rebuilt_when_labels_change(replica, tmp_path, monkeypatch):
    ds = _pfenet(replica, cache_dir=str(tmp_path))
    written = ds.prepare(log=lambda s: None)
    assert len(written) == 8 and all(p.is_file() for p in written)
    again = _pfenet(replica, cache_dir=str(tmp_path))
    monkeypatch.setattr(Pascal5i, "build_split", lambda *a: pytest.fail("cache not used"))
    assert again.query_items(2, "val") == ds.query_items(2, "val")
    monkeypatch.undo()
    # Different list options use a different cache folder.
    other = _pfenet(replica, train_filter="bam", cache_dir=str(tmp_path))
    assert other.list_cache().folder != ds.list_cache().folder
    assert Counter(p.parent for p in written).most_common(1)[0][1] == 8
