import json

import numpy as np
import pytest
from replica_layouts import rect_polygon, rle_of

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.instances import InstanceStore, build_store

H, W = 30, 40


def _plane(y0, x0, y1, x1):
    p = np.zeros((H, W), np.uint8)
    p[y0:y1, x0:x1] = 1
    return p


def _write(path, anns, images=None, categories=None):
    images = images if images is not None else [
        {"id": i, "file_name": f"img{i}.jpg", "height": H, "width": W} for i in (1, 2, 3)]
    doc = {"info": {}, "images": images, "licenses": [], "annotations": anns,
           "categories": categories or [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}]}
    path.write_text(json.dumps(doc))
    return path


def _ann(i, image, cat, segm, crowd=0):
    return {"id": i, "image_id": image, "category_id": cat, "segmentation": segm,
            "iscrowd": crowd}


def _build(tmp_path, anns, **kw):
    src = _write(tmp_path / "instances.json", anns, **kw)
    dest = tmp_path / "store.sqlite"
    summary = build_store(src, dest, lambda img: f"x/{img['file_name'][:-4]}")
    return src, InstanceStore(dest), summary


def test_union_per_image_and_class_from_unordered_annotations(tmp_path):
    a, b = _plane(0, 0, 10, 10), _plane(5, 5, 15, 15)  # overlapping instances of class 1
    crowd = _plane(20, 20, 30, 40)
    anns = [  # interleaved across images, as in the real files
        _ann(1, 2, 1, rect_polygon(0, 0, 10, 10)),
        _ann(2, 1, 7, rle_of(crowd, compressed=False), crowd=1),
        _ann(3, 2, 1, rle_of(b, compressed=True)),
        _ann(4, 1, 1, rect_polygon(0, 0, 10, 10)),
        _ann(5, 3, 1, [[1, 1, 2, 2]]),  # degenerate polygon: no pixel, no mask
    ]
    src, store, summary = _build(tmp_path, anns)
    assert (summary.images, summary.annotations, summary.masks) == (3, 5, 3)
    assert np.array_equal(store.mask("x/img2", 1), a | b)
    assert np.array_equal(store.mask("x/img1", 7), crowd)  # crowd regions count
    assert store.mask("x/img3", 1) is None and store.image_size("x/img3") == (H, W)
    areas = {(i, c): n for i, c, n in store.areas()}
    assert areas == {("x/img1", 1): 100, ("x/img1", 7): 200, ("x/img2", 1): int((a | b).sum())}
    assert [c["id"] for c in store.meta()["categories"]] == [1, 7]
    assert store.is_current(src)
    src.write_text(src.read_text() + " ")
    assert not store.is_current(src)  # the source changed: rebuild


def test_pixels_shared_by_two_classes(tmp_path):
    one, seven = _plane(0, 0, 10, 20), _plane(5, 10, 20, 30)
    anns = [_ann(1, 1, 1, rle_of(one, True)), _ann(2, 1, 7, rle_of(seven, True))]
    _, store, _ = _build(tmp_path, anns)
    both = (one & seven).astype(bool)
    ignored = store.mask("x/img1", 1, overlap="ignore")
    assert (ignored[both] == 255).all() and np.array_equal(ignored == 1, one.astype(bool) & ~both)
    assert np.array_equal(store.mask("x/img1", 1, overlap="union"), one)
    clear = {(i, c): n for i, c, n in store.areas(overlap="ignore")}
    assert clear[("x/img1", 1)] == one.sum() - both.sum()


@pytest.mark.parametrize("ann, match", [
    (_ann(1, 9, 1, rect_polygon(0, 0, 5, 5)), "image_id 9, which is not in 'images'"),
    ({"id": 4, "image_id": 1, "segmentation": []}, "annotation 4 lacks a valid 'category_id'"),
    (_ann(5, 1, 1, {"size": [3, 3], "counts": "abc"}), r"RLE size \[3, 3\] differs"),
    (_ann(6, 1, 1, "oops"), "neither polygons nor RLE"),
])
def test_malformed_annotations_are_named(tmp_path, ann, match):
    with pytest.raises(DatasetError, match=match):
        _build(tmp_path, [ann])


def test_missing_categories_and_bad_images(tmp_path):
    src = tmp_path / "i.json"
    src.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="no 'categories' list"):
        build_store(src, tmp_path / "s.sqlite", lambda img: "x")
    with pytest.raises(DatasetError, match="lacks a valid 'height'"):
        _build(tmp_path, [], images=[{"id": 1, "file_name": "a.jpg", "width": 3}])


def test_store_survives_pickling_for_workers(tmp_path):
    import pickle

    _, store, _ = _build(tmp_path, [_ann(1, 1, 1, rect_polygon(0, 0, 10, 10))])
    assert store.mask("x/img1", 1).sum() == 100  # opens a connection
    clone = pickle.loads(pickle.dumps(store))
    assert clone.mask("x/img1", 1).sum() == 100


def test_missing_store_says_how_to_build_it(tmp_path):
    with pytest.raises(DatasetError, match="refseg-bench data prepare"):
        InstanceStore(tmp_path / "none.sqlite").mask("x", 1)


def _rendered(store, item, cats):
    return {c: store.mask(item, c, overlap="rendered") for c in cats}


def test_rendered_view_paints_non_crowd_instances_in_file_order(tmp_path):
    a, b = _plane(0, 0, 20, 20), _plane(10, 10, 30, 30)  # classes 1 and 7 share 100 px
    crowd = _plane(0, 30, 10, 40)
    anns = [  # image 1: 7 written first but with the larger id, then 1; image 2 interleaved
        _ann(9, 1, 7, rect_polygon(10, 10, 30, 30)),
        _ann(3, 2, 1, rect_polygon(0, 0, 20, 20)),
        _ann(1, 1, 1, rle_of(a, compressed=True)),
        _ann(2, 1, 7, rle_of(crowd, compressed=False), crowd=1),
        _ann(4, 2, 7, rect_polygon(10, 10, 30, 30)),
        _ann(5, 3, 7, rle_of(crowd, compressed=False), crowd=1),  # only a crowd region
    ]
    src = _write(tmp_path / "i.json", anns)
    build_store(src, tmp_path / "s.sqlite", lambda img: f"x/{img['file_name'][:-4]}",
                label_maps=True)
    store = InstanceStore(tmp_path / "s.sqlite")
    one = _rendered(store, "x/img1", (1, 7))  # 1 drawn last: it wins the shared pixels
    assert np.array_equal(one[1], a) and np.array_equal(one[7], b & ~a)
    two = _rendered(store, "x/img2", (1, 7))  # 7 drawn last
    assert np.array_equal(two[1], a & ~b) and np.array_equal(two[7], b)
    assert not store.mask("x/img3", 7, overlap="rendered").any()  # crowd is background
    assert np.array_equal(store.mask("x/img3", 7), crowd)  # but part of the union
    got = {(i, c): n for i, c, n in store.areas(overlap="rendered")}
    assert got == {("x/img1", 1): 400, ("x/img1", 7): 300, ("x/img2", 1): 300,
                   ("x/img2", 7): 400, ("x/img3", 7): 0}
    assert store.is_current(src, label_maps=True)


def test_rendered_view_needs_a_store_built_with_label_maps(tmp_path):
    src, store, _ = _build(tmp_path, [_ann(1, 1, 1, rect_polygon(0, 0, 10, 10))])
    assert not store.is_current(src, label_maps=True)  # open_store rebuilds it
    with pytest.raises(DatasetError, match="without rendered label maps"):
        store.mask("x/img1", 1, overlap="rendered")
    with pytest.raises(ValueError, match="overlap must be one of"):
        store.mask("x/img1", 1, overlap="paint")


def _star(rng, h, w):
    n = int(rng.integers(5, 12))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(4, 15) * rng.uniform(0.5, 1.0, n)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    return [np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).ravel().tolist()]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_rendered_view_equals_painting_random_overlapping_instances(tmp_path):
    """The RLE-only rendering against painting decoded masks on a plane, on random star
    polygons (several per category, crowd regions, shapes crossing the border)."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(7)
    anns, truth = [], {}
    for image in (1, 2, 3):
        plane = np.zeros((H, W), np.uint8)
        for _ in range(int(rng.integers(3, 9))):
            cat, crowd = int(rng.choice([1, 7])), int(rng.random() < 0.2)
            segm = _star(rng, H, W)
            anns.append(_ann(len(anns) + 1, image, cat, segm, crowd=crowd))
            if not crowd:
                rle = mask_utils.merge(mask_utils.frPyObjects(segm, H, W))
                plane[mask_utils.decode(rle).astype(bool)] = cat
        truth[f"x/img{image}"] = plane
    src = _write(tmp_path / "i.json", anns)
    build_store(src, tmp_path / "s.sqlite", lambda img: f"x/{img['file_name'][:-4]}",
                label_maps=True)
    store = InstanceStore(tmp_path / "s.sqlite")
    for item, plane in truth.items():
        for cat in (1, 7):
            got = store.mask(item, cat, overlap="rendered")
            want = (plane == cat).astype(np.uint8)
            assert np.array_equal(want if got is None else got, want), (item, cat)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_run_lengths_of_compressed_rles_and_their_difference():
    from pycocotools import mask as mask_utils

    from refseg_bench.datasets.label_maps import _difference, _rle_counts

    rng = np.random.default_rng(3)
    for trial in range(40):
        a, b = (rng.random((H, W)) < 0.5).astype(np.uint8), _plane(*rng.integers(0, 30, 4))
        if trial == 0:
            a[:] = 1  # first run of zeros is empty
        ra, rb = (mask_utils.encode(np.asfortranarray(p)) for p in (a, b))
        flat = a.ravel(order="F")
        runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]]))
        want = runs.tolist() if flat[0] == 0 else [0, *runs.tolist()]
        assert _rle_counts(ra["counts"]).tolist() == want
        diff = mask_utils.decode(_difference(mask_utils, ra, rb, H, W))
        assert np.array_equal(diff, a & (1 - b))
