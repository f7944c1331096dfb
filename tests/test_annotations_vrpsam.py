"""VRP-SAM's evaluation scribble convention (annotation_style: vrp-sam) on hand-built masks:
always the rand_curve preset with 9 strokes, drawn on the 512x512 support, returned at the
support's size, deterministic per the episode's generator."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refseg_bench import annotations
from refseg_bench.annotations import (
    EmptyReferenceError,
    nearest_resize,
    simulate_annotation,
    to_original_size,
    vrpsam_preset_and_count,
)
from refseg_bench.errors import ConfigError
from refseg_bench.protocols import load_protocol, protocol_names


def ellipse_mask(h: int, w: int) -> np.ndarray:
    """An ellipse filling about half of an ``(h, w)`` label, with a 255 band."""
    yy, xx = np.mgrid[:h, :w]
    r = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2
    mask = (r <= 1).astype(np.uint8)
    mask[(r > 1) & (r <= 1.1)] = 255
    return mask


@pytest.fixture
def strokes_drawn(monkeypatch):
    """Record (preset name, stroke count, canvas shape, result) of every stroke drawing."""
    calls = []
    draw = annotations._draw_strokes

    def spy(fg, preset, n_strokes, rng, integer_width):
        out = draw(fg, preset, n_strokes, rng, integer_width)
        calls.append((preset.name, n_strokes, fg.shape, integer_width, out))
        return out

    monkeypatch.setattr(annotations, "_draw_strokes", spy)
    return calls


def test_preset_and_count_are_the_official_random_321_draws():
    for area in (20, 21, 500, 512 * 512):
        assert vrpsam_preset_and_count(area)[0].name == "rand_curve"
        assert vrpsam_preset_and_count(area)[1] == 9
    for area in range(1, 20):  # VRP-SAM's randint(1, min(20, area)) on a fresh Random(321)
        preset, count = vrpsam_preset_and_count(area)
        assert preset.name == "rand_curve"
        assert count == random.Random(321).randint(1, area)
    official = random.Random(321).choices(["rand_curve", "rand_curve_small"], [0.5, 0.5], k=1)
    assert official == ["rand_curve"]


@pytest.mark.parametrize("shape", [(600, 800), (1024, 1536), (375, 500), (120, 90)])
def test_always_rand_curve_9_strokes_drawn_at_512(shape, strokes_drawn):
    mask = ellipse_mask(*shape)
    fg = mask == 1
    for seed in range(4):
        ann = simulate_annotation(mask, "scribble", np.random.default_rng(seed), "vrp-sam")
        assert ann.kind == "scribble" and ann.raster.shape == shape  # original size
        assert ann.raster.any() and fg[ann.raster].all()
        name, count, canvas, integer_width, drawn = strokes_drawn[-1]
        assert (name, count, canvas, integer_width) == ("rand_curve", 9, (512, 512), True)
        back = nearest_resize(ann.raster, 512)
        if min(shape) >= 512:  # resizing to the model input gives the official scribble
            np.testing.assert_array_equal(back, drawn)
        else:  # smaller supports lose no stroke pixel
            assert (back >= drawn).all()
        xs, ys = ann.points[:, 0].astype(int), ann.points[:, 1].astype(int)
        assert len(xs) >= 1 and ann.raster[ys, xs].all()


def test_deterministic_per_episode_generator():
    mask = ellipse_mask(600, 700)
    a, b, c = (simulate_annotation(mask, "scribble", np.random.default_rng(s), "vrp-sam")
               for s in (5, 5, 6))
    np.testing.assert_array_equal(a.raster, b.raster)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.raster, c.raster)  # stroke shapes follow the episode seed


def test_harness_style_still_draws_per_episode_at_original_size(strokes_drawn):
    mask = ellipse_mask(300, 400)
    for seed in range(12):
        simulate_annotation(mask, "scribble", np.random.default_rng(seed))
    assert {c[2] for c in strokes_drawn} == {(300, 400)}
    assert len({(c[0], c[1]) for c in strokes_drawn}) > 3  # presets and counts vary
    assert not any(c[3] for c in strokes_drawn)


def test_other_kinds_do_not_depend_on_the_style():
    mask = ellipse_mask(200, 260)
    for kind in ("mask", "box", "point"):
        a = simulate_annotation(mask, kind, np.random.default_rng(3))
        b = simulate_annotation(mask, kind, np.random.default_rng(3), "vrp-sam")
        np.testing.assert_array_equal(a.raster, b.raster)


def test_to_original_size_is_nearest_neighbour_both_ways():
    rng = np.random.default_rng(0)
    drawn = rng.random((512, 512)) < 0.3
    for shape in [(512, 512), (513, 700), (1000, 2048)]:  # larger: exact round trip
        np.testing.assert_array_equal(nearest_resize(to_original_size(drawn, shape), 512),
                                      drawn)
    small = to_original_size(drawn, (100, 37))  # smaller: pixel = any of its copies
    rows, cols = np.arange(512) * 100 // 512, np.arange(512) * 37 // 512
    want = np.zeros((100, 37), bool)
    np.logical_or.at(want, (rows[:, None], cols[None, :]), drawn)
    np.testing.assert_array_equal(small, want)


def test_foreground_vanishing_at_512_cannot_be_annotated():
    mask = np.zeros((2000, 2000), np.uint8)
    mask[1, 1] = 1  # rows and columns 0, 3, 7, ... are sampled at 512: this pixel is not
    with pytest.raises(EmptyReferenceError, match="vanishes when nearest-resized to 512"):
        simulate_annotation(mask, "scribble", np.random.default_rng(0), "vrp-sam")
    assert simulate_annotation(mask, "scribble", np.random.default_rng(0)).raster[1, 1]


def test_style_is_a_recorded_protocol_field():
    assert load_protocol("vrp-sam").annotation_style == "vrp-sam"
    assert load_protocol("vrp-sam").for_dataset("coco20i").annotation_style == "vrp-sam"
    assert load_protocol("vrp-sam").to_dict()["annotation_style"] == "vrp-sam"
    others = {n: load_protocol(n).annotation_style for n in protocol_names() if n != "vrp-sam"}
    assert set(others.values()) == {"harness"}
    assert "9 strokes" in load_protocol("vrp-sam").description
    with pytest.raises(ConfigError, match="annotation_style must be one of"):
        load_protocol("hsnet").with_overrides({"annotation_style": "seem"})
    with pytest.raises(ValueError, match="annotation style must be one of"):
        simulate_annotation(ellipse_mask(50, 50), "scribble", np.random.default_rng(0), "x")


def test_load_episode_passes_the_style(synthetic_root, strokes_drawn):
    from refseg_bench.datasets.synthetic import SyntheticDataset
    from refseg_bench.loading import EpisodeDataset, load_episode
    from refseg_bench.sampler import sample_episodes

    ds = SyntheticDataset(synthetic_root)
    protocol = load_protocol("vrp-sam").for_dataset("synthetic")
    spec = sample_episodes(ds, 0, "val", 1, 2, 0, protocol).episodes[0]
    loaded = load_episode(ds, spec, "scribble", protocol.annotation_style)
    assert loaded.episode is not None and strokes_drawn[-1][2] == (512, 512)
    assert loaded.episode.annotations[0].raster.shape == loaded.episode.support_images[0] \
        .shape[:2]
    EpisodeDataset(ds, [spec], "scribble")[0]  # the harness style by default
    assert strokes_drawn[-1][2] != (512, 512)
