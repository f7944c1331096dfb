"""The fold-aware dataset interface every benchmark implements.

Item ids are strings that are stable across machines (a relative file stem such as
``2007_000033`` or ``apple/3``): they go into manifests, whose hash must not depend on
where the data lives.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from refseg_bench.episodes import IGNORE_INDEX

SPLITS = ("train", "val", "test")


class DatasetError(RuntimeError):
    """A dataset root, list or file is missing or malformed; the message says what to do."""


class FoldedDataset(ABC):
    """A benchmark with classes split into folds.

    ``classes(fold, "train")`` are the base classes of ``fold``; ``classes(fold, "val")``
    (and ``"test"`` where the benchmark has one) are its novel classes. Class ids are
    1-based: id ``c`` is named ``class_names[c - 1]``.
    """

    name: ClassVar[str]
    n_folds: ClassVar[int]
    # True where a training image can never show a novel class (FSS-1000: one class per
    # image, classes split by name), so the base-only filter has nothing to drop.
    train_images_base_only: ClassVar[bool] = False
    default_protocol: ClassVar[str] = "hsnet"
    # The split published numbers are reported on (FSS-1000: its 240 test classes).
    default_split: ClassVar[str] = "val"
    ignore_index: ClassVar[int] = IGNORE_INDEX

    def __new__(cls, *args, **kwargs):
        # The constructor call is kept so ``with_options`` can rebuild the same dataset with
        # one option changed, whatever options the subclass keeps in ``self.options``.
        obj = super().__new__(cls)
        obj._init_call = (args, kwargs)
        return obj

    def __init__(self, root: str | Path, **options) -> None:
        self.root = Path(root).expanduser()
        self.options = options

    def with_options(self, **changes) -> FoldedDataset:
        """The same dataset built again with constructor options ``changes`` replaced."""
        args, kwargs = self._init_call
        return type(self)(*args, **{**kwargs, **changes})

    def base_only_training(self) -> FoldedDataset:
        """This dataset with BAM's base-only filter on its ``train`` lists: no training image
        shows a pixel of a novel class of the fold, not even as background. Trained methods
        train on this view; evaluation lists are unchanged.

        Datasets offering the filter take the option ``train_filter: bam``; raises
        DatasetError for one that can neither filter nor guarantee it needs no filter."""
        if self.options.get("train_filter") == "bam" or self.train_images_base_only:
            return self
        if "train_filter" not in self.options:
            raise DatasetError(
                f"dataset {self.name!r} cannot drop training images that show a novel class "
                "(no train_filter option), so a method trained on it would see novel classes.")
        return self.with_options(train_filter="bam")

    # --- class and fold structure -------------------------------------------------------
    @property
    @abstractmethod
    def class_names(self) -> list[str]: ...

    @abstractmethod
    def classes(self, fold: int, split: str) -> list[int]:
        """Episode classes of ``fold`` for ``split`` (base for train, novel otherwise)."""

    # --- lists ------------------------------------------------------------------------
    @abstractmethod
    def items(self, fold: int, split: str, class_id: int) -> list[str]:
        """Items that may serve as query or support of ``class_id``, list rules applied
        (e.g. the 2048-pixel rule), in list-file order."""

    @abstractmethod
    def query_items(self, fold: int, split: str) -> list[str]:
        """All query candidates of ``(fold, split)`` in list-file order (file-order samplers)."""

    @abstractmethod
    def item_classes(self, fold: int, split: str, item: str) -> list[int]:
        """Classes of ``classes(fold, split)`` present in ``item`` (any size), sorted."""

    def pairs(self, fold: int, split: str) -> list[tuple[str, int]]:
        """(item, class) pairs in list order; datasets with official pair lists override."""
        return [
            (item, c)
            for item in self.query_items(fold, split)
            for c in self.item_classes(fold, split, item)
        ]

    # --- pixels -------------------------------------------------------------------------
    @abstractmethod
    def load_image(self, item: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at original size."""

    @abstractmethod
    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        """``(H, W)`` uint8: 1 for ``class_id``, 0 for everything else, 255 ignored."""

    # --- provenance ---------------------------------------------------------------------
    def describe(self) -> dict:
        """Facts recorded with every run (list source, split convention, versions...)."""
        return {"name": self.name, "root": str(self.root), "n_folds": self.n_folds}

    def fingerprint(self, fold: int, split: str) -> str:
        """sha256 of the lists an episode manifest depends on (not of the pixels)."""
        h = hashlib.sha256()
        for c in self.classes(fold, split):
            h.update(f"{c}:{','.join(self.items(fold, split, c))}\n".encode())
        return h.hexdigest()

    def class_name(self, class_id: int) -> str:
        return self.class_names[class_id - 1]

    def folds(self) -> list[int]:
        return list(range(self.n_folds))
