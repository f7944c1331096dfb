"""Simulated reference annotations: geometry, containment, determinism, errors, real masks."""

from __future__ import annotations

import numpy as np
import pytest

from refseg_bench.annotations import (
    MAX_POINTS,
    EmptyReferenceError,
    _render_polyline,
    simulate_annotation,
)
from refseg_bench.datasets.layout import binarize
from refseg_bench.episodes import ANNOTATION_KINDS
from refseg_bench.imageio import read_label


def blob_mask(seed: int = 0, shape=(90, 120)) -> np.ndarray:
    """Two ellipses, a 255 band around them and a 255 void corner."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rng = np.random.default_rng(seed)
    fg = np.zeros(shape, bool)
    for _ in range(2):
        cy, cx = rng.uniform(20, shape[0] - 20), rng.uniform(20, shape[1] - 20)
        fg |= ((yy - cy) / rng.uniform(6, 18)) ** 2 + ((xx - cx) / rng.uniform(6, 18)) ** 2 <= 1
    mask = fg.astype(np.uint8)
    band = (((yy - cy) / 20) ** 2 + ((xx - cx) / 20) ** 2 <= 1) & ~fg
    mask[band] = 255
    mask[:5, :5] = 255
    return mask


def test_mask_kind_is_the_foreground_with_its_box():
    mask = blob_mask()
    ann = simulate_annotation(mask, "mask", np.random.default_rng(0))
    assert ann.kind == "mask" and ann.raster.dtype == bool
    np.testing.assert_array_equal(ann.raster, mask == 1)
    assert ann.points.shape == (0, 2) and ann.boxes.shape == (1, 4)


@pytest.mark.parametrize("seed", range(5))
def test_box_is_the_tight_filled_box_around_all_foreground(seed):
    mask = blob_mask(seed)
    ann = simulate_annotation(mask, "box", np.random.default_rng(seed))
    ys, xs = np.nonzero(mask == 1)
    expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # exclusive end
    assert ann.boxes.dtype == np.float32 and ann.boxes.shape == (1, 4)
    np.testing.assert_array_equal(ann.boxes[0], expected)
    filled = np.zeros_like(ann.raster)
    filled[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    np.testing.assert_array_equal(ann.raster, filled)
    assert not (mask == 255)[ann.raster].all()  # 255 pixels are never foreground evidence


@pytest.mark.parametrize("seed", range(5))
def test_points_are_distinct_foreground_pixels(seed):
    mask = blob_mask(seed)
    ann = simulate_annotation(mask, "point", np.random.default_rng(seed))
    k = min(MAX_POINTS, int((mask == 1).sum()))
    assert ann.points.shape == (k, 2) and ann.points.dtype == np.float32
    assert ann.point_labels.tolist() == [1] * k
    xs, ys = ann.points[:, 0].astype(int), ann.points[:, 1].astype(int)
    np.testing.assert_array_equal(ann.points, np.stack([xs, ys], 1))  # integer pixel indices
    assert (mask[ys, xs] == 1).all()
    assert len({(x, y) for x, y in zip(xs, ys, strict=True)}) == k
    assert ann.raster.sum() == k and ann.raster[ys, xs].all()


def test_points_on_a_small_mask_take_every_pixel():
    mask = np.zeros((10, 10), np.uint8)
    mask[3, 4] = mask[7, 1] = mask[2, 2] = 1
    ann = simulate_annotation(mask, "point", np.random.default_rng(0))
    assert sorted(map(tuple, ann.points.astype(int).tolist())) == [(1, 7), (2, 2), (4, 3)]


@pytest.mark.parametrize("seed", range(8))
def test_scribble_lies_inside_the_mask_and_exposes_stroke_points(seed):
    mask = blob_mask(seed)
    ann = simulate_annotation(mask, "scribble", np.random.default_rng(seed))
    assert ann.raster.any()
    assert (mask[ann.raster] == 1).all()
    assert 1 <= len(ann.points) <= 20 and ann.point_labels.tolist() == [1] * len(ann.points)
    xs, ys = ann.points[:, 0].astype(int), ann.points[:, 1].astype(int)
    assert ann.raster[ys, xs].all()


def test_scribbles_are_strokes_not_the_whole_mask():
    """On a large object the strokes cover part of it, not all of it."""
    mask = np.zeros((300, 300), np.uint8)
    mask[20:280, 20:280] = 1
    covered = [simulate_annotation(mask, "scribble", np.random.default_rng(s)).raster.mean()
               for s in range(10)]
    assert 0 < np.mean(covered) < 0.5 * mask.mean()


def test_scribble_on_a_one_pixel_mask_at_the_border():
    mask = np.zeros((40, 50), np.uint8)
    mask[0, 49] = 1
    for kind in ANNOTATION_KINDS:
        ann = simulate_annotation(mask, kind, np.random.default_rng(1))
        assert ann.raster[0, 49] and ann.raster.sum() >= 1
        if kind != "box":
            assert ann.raster.sum() == 1


def test_stroke_rendering_width_and_round_caps():
    xs, ys = np.array([10.0, 50.0]), np.array([20.0, 20.0])
    r = _render_polyline(xs, ys, width=5.0, shape=(40, 60))
    assert r[:, 30].sum() == 5 and r[18:23, 30].all()  # |dy| <= 2.5
    assert r[20, 8] and not r[20, 7]  # a round cap of radius 2.5 beyond the end
    assert r[18, 9] and not r[18, 8]  # (9, 18) is 2.24 from (10, 20); (8, 18) is 2.83


def test_stroke_partly_outside_the_image_is_clipped():
    r = _render_polyline(np.array([-20.0, 10.0]), np.array([5.0, 5.0]), 4.0, (12, 12))
    assert r.shape == (12, 12) and r[5, 0] and r[3, 0] and r[5, 11]  # cap of radius 2 at x=10
    assert not r[2, 0] and not r[0, 5]
    assert not _render_polyline(np.array([-50.0, -30.0]), np.array([5.0, 5.0]), 4.0,
                                (12, 12)).any()


@pytest.mark.parametrize("kind", ANNOTATION_KINDS)
def test_deterministic_given_the_generator(kind):
    mask = blob_mask(3)
    a = simulate_annotation(mask, kind, np.random.default_rng(42))
    b = simulate_annotation(mask, kind, np.random.default_rng(42))
    for field in ("raster", "points", "point_labels", "boxes"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("kind", ["point", "scribble"])
def test_different_seeds_give_different_annotations(kind):
    mask = blob_mask(3)
    rasters = {simulate_annotation(mask, kind, np.random.default_rng(s)).raster.tobytes()
               for s in range(5)}
    assert len(rasters) == 5


def test_empty_reference_errors_say_why():
    with pytest.raises(EmptyReferenceError, match="no pixel is 1"):
        simulate_annotation(np.zeros((8, 8), np.uint8), "mask", np.random.default_rng(0))
    with pytest.raises(EmptyReferenceError, match="every pixel is 255"):
        simulate_annotation(np.full((8, 8), 255, np.uint8), "point", np.random.default_rng(0))
    assert issubclass(EmptyReferenceError, ValueError)


def test_bad_kind_and_shape():
    with pytest.raises(ValueError, match="annotation kind must be one of"):
        simulate_annotation(blob_mask(), "lasso", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        simulate_annotation(np.ones((4, 4, 3), np.uint8), "mask", np.random.default_rng(0))


def _fss_masks(folder) -> list[tuple[str, np.ndarray]]:
    # apple, basketball: anti-aliased 0..255; eiffel_tower: 0/1 (real-samples README)
    return [(f"{png.parent.name}/{png.stem}", binarize(read_label(png)))
            for png in sorted(folder.glob("*/*.png"))]


def test_all_kinds_on_real_fss1000_masks(real_samples):
    masks = _fss_masks(real_samples("fss1000"))
    assert len(masks) == 25
    for i, (name, mask) in enumerate(masks):
        fg = mask == 1
        for kind in ANNOTATION_KINDS:
            ann = simulate_annotation(mask, kind, np.random.default_rng(i))
            assert ann.raster.shape == mask.shape, (name, kind)
            assert ann.raster.any(), (name, kind)
            if kind == "box":
                assert ann.raster[fg].all(), name
            else:
                assert fg[ann.raster].all(), (name, kind)
        scribble = simulate_annotation(mask, "scribble", np.random.default_rng(i)).raster
        assert scribble.sum() < fg.sum(), name
