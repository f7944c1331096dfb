import contextlib
import io
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
                     "refrigerator", "scissors"]  # docs/protocols.md §2.2, verbatim
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


def official_label_maps(root, subset: str) -> dict[str, np.ndarray]:
    """Label maps rendered from the instances JSON the way the official COCO-20i PNGs
    were, written here with pycocotools' COCO API and independently of the store: per
    image, the annotations of ``getAnnIds(imgIds=i, iscrowd=False)`` (file order) painted
    with their class index 1-80 over what was drawn before (chunbolang/HPA
    util/coco_parse_script.py, which fills polygons with cv2.fillPoly where we call
    ``annToMask``). Images without a non-crowd annotation get no map, as there."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(root / "annotations" / f"instances_{subset}.json"))
    names = [c["name"] for c in api.loadCats(api.getCatIds())]
    planes = {}
    for img_id in api.getImgIds():
        ann_ids = api.getAnnIds(imgIds=img_id, iscrowd=False)
        if not ann_ids:
            continue
        im = api.loadImgs([img_id])[0]
        plane = np.zeros((im["height"], im["width"]), np.uint8)
        for ann in api.loadAnns(ann_ids):
            cls = names.index(api.loadCats([ann["category_id"]])[0]["name"]) + 1
            plane[api.annToMask(ann).astype(bool)] = cls
        planes[f"{subset}/{im['file_name'][:-4]}"] = plane
    return planes


def official_counts(planes: dict, classes, min_pixels: int = 2048) -> tuple[dict, int]:
    """PFENet/BAM ``make_dataset`` on label maps: per class the images where it covers at
    least ``min_pixels``, and the number of images listed for any class."""
    by_class = {c: sorted(k for k, lab in planes.items() if (lab == c).sum() >= min_pixels)
                for c in classes}
    return by_class, len({k for v in by_class.values() for k in v})


# Per fold, (val, train) images listed for at least one class on the replica under each
# overlap rule. The rendered counts are recomputed from the official rule below; the
# others show that the replica's overlaps and crowd regions decide the 2048-pixel rule.
REPLICA_QUERIES = {
    "rendered": {0: (100, 260), 1: (80, 260), 2: (100, 220), 3: (80, 260)},
    "ignore": {0: (100, 220), 1: (80, 220), 2: (60, 240), 3: (100, 220)},
    "union": {0: (100, 260), 1: (100, 260), 2: (100, 280), 3: (120, 260)},
}


def _query_counts(ds) -> dict:
    return {f: (len(ds.query_items(f, "val")), len(ds.query_items(f, "train")))
            for f in range(4)}


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_default_lists_equal_the_official_rule_on_rendered_labels(coco, replica):
    counts = {f: [] for f in range(4)}
    for subset, split in (("val2014", "val"), ("train2014", "train")):
        planes = official_label_maps(replica.root, subset)
        for fold in range(4):
            want, n_images = official_counts(planes, coco.classes(fold, split))
            for c, items in want.items():
                assert sorted(coco.items(fold, split, c)) == items, (fold, split, c)
            counts[fold].append(n_images)
    assert {f: tuple(v) for f, v in counts.items()} == REPLICA_QUERIES["rendered"]
    assert _query_counts(coco) == REPLICA_QUERIES["rendered"]


def test_overlap_rules_give_different_lists_on_this_replica(coco, replica, tmp_path):
    for rule in ("ignore", "union"):
        ds = Coco20i(replica.root, overlap=rule, cache_dir=str(tmp_path / rule))
        assert _query_counts(ds) == REPLICA_QUERIES[rule] != REPLICA_QUERIES["rendered"]
    drawn_over = "val2014/COCO_val2014_000001000062"  # class 6 under a later class 7
    drawn_first = "val2014/COCO_val2014_000001000072"  # class 7 over an earlier class 8
    assert drawn_over in coco.items(2, "val", 7) and drawn_over not in coco.items(1, "val", 6)
    assert drawn_first in coco.items(2, "val", 7) and drawn_first not in coco.items(3, "val", 8)
    two_polygons = "val2014/COCO_val2014_000001000043"  # class 5 in two polygons, 2125 px
    assert two_polygons in coco.items(0, "val", 5)


def test_lists_follow_the_2048_rule_on_rendered_labels(coco, replica):
    for fold in (0, 3):
        for split, subset in (("val", "val2014"), ("train", "train2014")):
            for c in coco.classes(fold, split):
                want = sorted(i for i, lab in replica.labels.items() if i.startswith(subset)
                              and (lab == c).sum() >= 2048)
                assert sorted(coco.items(fold, split, c)) == want


def test_default_masks_are_the_rendered_labels(coco, replica, tmp_path):
    for item, lab in replica.labels.items():
        for c in np.unique(lab[lab > 0]):
            assert np.array_equal(coco.load_mask(item, int(c)), (lab == c).astype(np.uint8))
    crowd = "train2014/COCO_train2014_000001000041"  # class 4 + a crowd RLE of class 5
    assert not coco.load_mask(crowd, 5).any()  # crowd regions are background
    union = Coco20i(replica.root, overlap="union", cache_dir=str(tmp_path))
    assert (union.load_mask(crowd, 5) == 1).sum() == 25 * 45  # PANet counts them


def test_overlapping_instances_are_ignored_not_foreground(replica, tmp_path):
    item = "train2014/COCO_train2014_000001000011"  # class 1 overlapped by a class-2 RLE
    ign = Coco20i(replica.root, overlap="ignore", cache_dir=str(tmp_path / "a"))
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
