"""The embedded synthetic benchmark: structure, lists, pixels, determinism, concurrent use."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.synthetic import (
    GENERATOR_VERSION,
    SyntheticDataset,
    generate,
    schedule,
)
from refseg_bench.datasets.synthetic_render import class_looks, min_class_pixels
from refseg_bench.imageio import read_label

SMALL = 2  # n_per_class for tests that generate their own copy (about 20 images a pool)


@pytest.fixture(scope="module")
def ds(synthetic_root) -> SyntheticDataset:
    return SyntheticDataset(synthetic_root)


def test_fold_structure_like_pascal5i(ds):
    assert ds.n_folds == 4 and len(ds.class_names) == 20
    assert len(set(ds.class_names)) == 20
    for fold in range(4):
        novel = ds.classes(fold, "val")
        assert novel == list(range(5 * fold + 1, 5 * fold + 6)) == ds.classes(fold, "test")
        base = ds.classes(fold, "train")
        assert len(base) == 15 and not set(base) & set(novel)
        assert sorted(base + novel) == list(range(1, 21))


def test_every_class_has_at_least_50_images_in_both_pools(ds):
    val = set(ds._pool("val"))
    train = set(ds._pool("train"))
    assert not val & train
    for fold in range(4):
        for c in ds.classes(fold, "val"):
            items = ds.items(fold, "val", c)
            assert len(items) >= 50 and set(items) <= val
        for c in ds.classes(fold, "train"):
            items = ds.items(fold, "train", c)
            assert len(items) >= 50 and set(items) <= train


def test_lists_follow_the_scaled_2048_pixel_rule(ds):
    fold = 1
    for item in ds.query_items(fold, "val")[:40]:
        label = read_label(ds.data_dir / "SegmentationClass" / f"{item}.png")
        present = ds.item_classes(fold, "val", item)
        assert present == sorted(c for c in ds.classes(fold, "val") if (label == c).any())
        need = min_class_pixels(*label.shape)
        listed = [c for c in present if item in ds.items(fold, "val", c)]
        assert listed == [c for c in present if (label == c).sum() >= need]
        assert listed  # a query candidate is listed for at least one class


def test_scenes_have_several_classes_a_boundary_band_and_varied_sizes(ds):
    items = ds._pool("val")[:60]
    n_classes, sizes, band = [], set(), []
    for item in items:
        label = read_label(ds.data_dir / "SegmentationClass" / f"{item}.png")
        values = set(np.unique(label).tolist())
        assert values <= set(range(21)) | {255}
        n_classes.append(len(values - {0, 255}))
        sizes.add(label.shape)
        band.append((label == 255).mean())
        img = ds.load_image(item)
        assert img.shape == (*label.shape, 3) and img.dtype == np.uint8
    assert max(n_classes) == 3 and min(n_classes) == 1 and np.mean(n_classes) > 1.5
    assert len(sizes) > 30 and any(h != w for h, w in sizes)
    assert all(160 <= s <= 320 for hw in sizes for s in hw)
    assert 0.01 < np.mean(band) < 0.15  # a few-pixel band around every object


def test_band_surrounds_objects(ds):
    item = ds.items(0, "val", 1)[0]
    label = read_label(ds.data_dir / "SegmentationClass" / f"{item}.png")
    obj = label == 1
    # every 4-neighbour of an object pixel is the object or the band
    shifted = [np.roll(obj, s, axis=a) for s in (1, -1) for a in (0, 1)]
    neighbours = np.logical_or.reduce(shifted) & ~obj
    neighbours[[0, -1], :] = neighbours[:, [0, -1]] = False  # np.roll wraps around
    assert (label[neighbours] == 255).all()


def test_load_mask_values(ds):
    fold = 2
    item = ds.query_items(fold, "val")[0]
    c = ds.item_classes(fold, "val", item)[0]
    label = read_label(ds.data_dir / "SegmentationClass" / f"{item}.png")
    mask = ds.load_mask(item, c)
    assert mask.dtype == np.uint8 and mask.shape == label.shape
    np.testing.assert_array_equal(mask == 1, label == c)
    np.testing.assert_array_equal(mask == 255, label == 255)
    assert set(np.unique(mask).tolist()) <= {0, 1, 255}


def test_training_masks_make_novel_pixels_background(ds):
    fold = 0
    novel = set(ds.classes(fold, "val"))
    for item in ds.query_items(fold, "train"):
        label = read_label(ds.data_dir / "SegmentationClass" / f"{item}.png")
        shown = set(np.unique(label).tolist()) & novel
        if shown:
            base = ds.item_classes(fold, "train", item)[0]
            mask = ds.load_mask(item, base)
            assert (mask[np.isin(label, list(shown))] == 0).all()
            assert not set(ds.item_classes(fold, "train", item)) & novel
            return
    pytest.fail("no training image shows a novel class; the test needs one")


def test_describe_and_errors(ds):
    d = ds.describe()
    assert d["generator_version"] == GENERATOR_VERSION and d["n_per_class"] == 60
    assert d["n_images"]["val"] >= 500 and d["n_images"]["train"] >= 500
    with pytest.raises(DatasetError, match="unknown synthetic item"):
        ds.load_image("val_99999")
    with pytest.raises(DatasetError, match="not a val class of fold 0"):
        ds.items(0, "val", 7)
    with pytest.raises(DatasetError, match="folds 0..3"):
        ds.classes(4, "val")


def test_bad_options_fail_before_generating(tmp_path):
    with pytest.raises(TypeError):
        SyntheticDataset(tmp_path, n_per_clas=5)
    with pytest.raises(DatasetError, match="n_per_class must be >= 2"):
        SyntheticDataset(tmp_path, n_per_class=1)
    assert not any(tmp_path.iterdir())


def test_schedule_balances_classes():
    plan = schedule(7, np.random.default_rng(0))
    counts = np.bincount([c for img in plan for c in img], minlength=21)[1:]
    assert (counts == 7).all()
    assert all(len(set(img)) == len(img) and 1 <= len(img) <= 3 for img in plan)


def test_class_looks_share_at_most_one_cue():
    looks = class_looks()
    for i, a in enumerate(looks):
        for b in looks[i + 1:]:
            shared = (a.shape == b.shape) + (a.colour == b.colour) + (a.texture == b.texture)
            assert shared <= 1, (a.name, b.name)


def _snapshot(root: Path) -> tuple[dict, dict[str, bytes]]:
    data = root / f"v{GENERATOR_VERSION}-n{SMALL}"
    lists = {p.name: p.read_text() for p in (data / "ImageSets" / "Segmentation").iterdir()}
    lists["index"] = (data / "index.json").read_text()
    labels = {p.stem: read_label(p).tobytes()
              for p in sorted((data / "SegmentationClass").glob("*.png"))}
    return lists, labels


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    SyntheticDataset(root, n_per_class=SMALL)
    return root


def test_generation_is_deterministic(tmp_path, small_root):
    a = SyntheticDataset(small_root, n_per_class=SMALL)
    b = SyntheticDataset(tmp_path, n_per_class=SMALL)
    assert _snapshot(small_root) == _snapshot(tmp_path)
    assert b.data_dir.stat().st_mode & 0o755 == 0o755  # readable by others, like its files
    assert a.items(0, "val", 3) == b.items(0, "val", 3)
    item = a.query_items(0, "val")[0]
    np.testing.assert_array_equal(a.load_image(item), b.load_image(item))


def test_an_incomplete_directory_is_refused(tmp_path):
    (tmp_path / f"v{GENERATOR_VERSION}-n{SMALL}" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no meta.json"):
        SyntheticDataset(tmp_path, n_per_class=SMALL)


def _start(target, *args, **kwargs) -> multiprocessing.Process:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, kwargs=kwargs)
    proc.start()
    return proc


@pytest.mark.parametrize("entry", ["dataset", "generate"])
def test_concurrent_first_use_ends_with_one_valid_copy(tmp_path, small_root, entry):
    """Two processes generating into one root at once (``generate`` skips the lock, so the
    atomic rename alone must keep the result whole)."""
    target = tmp_path / "race" / f"v{GENERATOR_VERSION}-n{SMALL}"
    if entry == "dataset":
        procs = [_start(SyntheticDataset, tmp_path / "race", n_per_class=SMALL) for _ in "ab"]
    else:
        procs = [_start(generate, target, SMALL) for _ in "ab"]
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(p.name for p in (tmp_path / "race").iterdir() if not p.name.endswith(
        ".lock")) == [target.name]  # no temporary directory left behind
    assert _snapshot(tmp_path / "race") == _snapshot(small_root)
    meta = json.loads((target / "meta.json").read_text())
    assert meta["n_per_class"] == SMALL


def test_bam_train_filter_drops_images_with_a_novel_class(synthetic_root):
    ds = SyntheticDataset(synthetic_root)
    index = json.loads((ds.data_dir / "index.json").read_text())
    view = ds.base_only_training()
    assert view.options["train_filter"] == "bam" and ds.options["train_filter"] == "none"
    for fold in range(4):
        novel = {str(c) for c in ds.classes(fold, "val")}
        kept = set(view.query_items(fold, "train"))
        for c in ds.classes(fold, "train"):
            kept |= set(view.items(fold, "train", c))
        assert kept and all(not novel & {k for k, v in index[i]["areas"].items() if v > 0}
                            for i in kept)
        dropped = set(ds.query_items(fold, "train")) - set(view.query_items(fold, "train"))
        assert dropped and all(novel & set(index[i]["areas"]) for i in dropped)
        assert view.query_items(fold, "val") == ds.query_items(fold, "val")


def test_first_use_says_it_is_generating_with_progress(tmp_path, capsys):
    SyntheticDataset(tmp_path, n_per_class=SMALL)
    err = capsys.readouterr().err
    assert "generating the synthetic benchmark" in err and str(tmp_path) in err
    total = sum(int(n) for n in json.loads(
        (tmp_path / f"v1-n{SMALL}" / "meta.json").read_text())["n_images"].values())
    assert f"{total}/{total}" in err  # the progress bar on stderr reached the end
    SyntheticDataset(tmp_path, n_per_class=SMALL)
    assert "generating" not in capsys.readouterr().err  # only on first use
