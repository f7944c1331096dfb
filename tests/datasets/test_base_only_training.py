"""Trained methods never see a novel class: on replicas of the real PASCAL VOC + SBD and
COCO 2014 layouts, no image in a fold's training lists (as trained methods read them) has a
single pixel of a novel class, read straight from the label files on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from replica_layouts import make_coco, make_pascal

from refseg_bench.datasets.coco import Coco20i
from refseg_bench.datasets.pascal import Pascal5i


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    return make_pascal(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


def _training_items(ds, fold: int) -> set[str]:
    items = set(ds.query_items(fold, "train"))
    for c in ds.classes(fold, "train"):
        items |= set(ds.items(fold, "train", c))
    return items


def _leaks(ds, fold: int, label_file) -> list[str]:
    novel = ds.classes(fold, "val")
    return sorted(i for i in _training_items(ds, fold)
                  if np.isin(np.asarray(Image.open(label_file(i))), novel).any())


@pytest.mark.parametrize("lists", ["hsnet", "pfenet"])
def test_pascal_training_lists_hold_no_novel_pixel(pascal, tmp_path, lists):
    base = pascal.extra["base"]
    ds = Pascal5i(pascal.root, lists=lists, split_files=pascal.extra["split_files"],
                  train_pool=pascal.extra["train_pool"], cache_dir=str(tmp_path))

    def label(item):  # palette PNG: the pixel values are the class indices
        return base / "SegmentationClassAug" / f"{item}.png"

    for fold in range(4):
        assert _leaks(ds, fold, label), "the replica must hold training images to drop"
        view = ds.base_only_training()
        assert view.options["train_filter"] == "bam"
        assert _leaks(view, fold, label) == []
        assert _training_items(view, fold)  # something is left to train on
        assert view.query_items(fold, "val") == ds.query_items(fold, "val")


def test_coco_training_lists_hold_no_novel_pixel(coco, tmp_path):
    ds = Coco20i(coco.root, cache_dir=str(tmp_path))

    def label(item):  # rendered label PNG of the replica: pixel = class id
        subset, stem = item.split("/")
        return coco.root / "annotations" / subset / f"{stem}.png"

    for fold in range(4):
        assert _leaks(ds, fold, label)
        view = ds.base_only_training()
        assert _leaks(view, fold, label) == []
        assert _training_items(view, fold)


def test_vrpsam_training_reads_only_base_only_images(pascal, tmp_path):
    """End to end: a tiny VRP-SAM training on the PASCAL replica loads no image with a
    novel pixel, as query or support."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
    from vrpsam_testing import tiny_method

    read: list[str] = []

    class Spy(Pascal5i):
        def load_image(self, item):
            read.append(item)
            return super().load_image(item)

    ds = Spy(pascal.root, lists="pfenet", train_pool=pascal.extra["train_pool"],
             cache_dir=str(tmp_path / "cache"))
    method = tiny_method(tmp_path / "ckpt", dataset=ds, train={"epochs": 1,
                                                                "episodes_per_epoch": 8})
    method.fit(ds, 1, annotation="mask", device=torch.device("cpu"), progress=False)
    novel = ds.classes(1, "val")
    base = pascal.extra["base"]
    assert read
    for item in set(read):
        lab = np.asarray(Image.open(base / "SegmentationClassAug" / f"{item}.png"))
        assert not np.isin(lab, novel).any(), item
