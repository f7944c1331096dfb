"""``ListedDataset``: a ``FoldedDataset`` whose per-fold lists are built from the files on
disk once, cached (``lists.py``), and served from memory afterwards.

A subclass states its expected layout (printed when the root is wrong), the options that
change its lists, the source files whose change invalidates them, and how to build the
lists of one (fold, split). ``prepare`` builds and caches every fold at once; otherwise
each (fold, split) is built on first use.
"""

from __future__ import annotations

import functools
import shutil
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from refseg_bench.datasets.base import DatasetError, FoldedDataset
from refseg_bench.datasets.layout import find_root
from refseg_bench.datasets.lists import (
    ListCache,
    SplitLists,
    cache_root,
    file_signature,
    options_key,
)
from refseg_bench.errors import ConfigError

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def check_choice(name: str, value, choices) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"dataset option {name} must be one of {', '.join(map(str, choices))};"
                          f" got {value!r}")


class ListedDataset(FoldedDataset):
    """Base of the on-disk benchmarks (see module docstring)."""

    layout: ClassVar[str] = ""
    # Splits with lists of their own; others map through ``split_alias`` (HSNet reads
    # 'val' for both 'val' and 'test' on PASCAL and COCO).
    available_splits: ClassVar[tuple[str, ...]] = ("train", "val")
    split_alias: ClassVar[dict[str, str]] = {"test": "val"}

    def __init__(self, root: str | Path, cache_dir: str | None = None, **options) -> None:
        super().__init__(root, **options)
        self.cache_dir = cache_dir
        self._lists: dict[tuple[int, str], SplitLists] = {}
        self._cache: ListCache | None = None
        self.log: Log = _quiet

    # --- subclass hooks -----------------------------------------------------------------
    def list_options(self) -> dict:
        """Options that change the lists (they key the cache folder)."""
        return dict(self.options)

    def sources(self) -> list[Path]:
        """Files or folders whose size/mtime change invalidates cached lists."""
        return []

    def prepare_sources(self, force: bool) -> None:
        """Heavy work shared by all folds (class-area census, instance-mask store)."""

    @abstractmethod
    def build_split(self, fold: int, split: str) -> SplitLists:
        """Lists of one (fold, canonical split), straight from the files."""

    # --- lists ----------------------------------------------------------------------------
    def cache_folder(self) -> Path:
        """``<cache root>/<dataset>`` (see lists.py for where the cache root is)."""
        return cache_root(self.root, self.cache_dir) / self.name

    def list_cache(self) -> ListCache:
        if self._cache is None:
            folder = self.cache_folder() / f"lists-{options_key(self.list_options())}"
            self._cache = ListCache(folder, file_signature(self.sources()))
        return self._cache

    def canonical_split(self, split: str) -> str:
        s = self.split_alias.get(split, split)
        if s not in self.available_splits:
            valid = sorted(set(self.available_splits) | {k for k, v in self.split_alias.items()
                                                         if v in self.available_splits})
            raise DatasetError(f"{self.name} has no {split!r} split; valid: {', '.join(valid)}")
        return s

    def check_fold(self, fold: int) -> None:
        if fold not in self.folds():
            raise DatasetError(f"{self.name} has folds {self.folds()}, got fold {fold}")

    def lists(self, fold: int, split: str) -> SplitLists:
        """The lists of ``(fold, split)``: from memory, else the cache, else built."""
        self.check_fold(fold)
        key = (fold, self.canonical_split(split))
        if key not in self._lists:
            cache = self.list_cache()
            got = cache.read(*key)
            if got is None:
                self.prepare_sources(force=False)
                got = self.build_split(*key)
                try:
                    cache.write(*key, got, self.describe())
                except OSError as err:  # a read-only cache costs time, not correctness
                    self.log(f"could not write list cache {cache.folder}: {err.strerror}")
            self._lists[key] = got
        return self._lists[key]

    def prepare(self, force: bool = False, log: Log = print) -> list[Path]:
        """Build and cache the lists of every fold and split; returns the files written."""
        self.log = log
        cache = self.list_cache()
        if force and cache.folder.exists():
            shutil.rmtree(cache.folder)
        self._lists.clear()
        self.prepare_sources(force=force)
        written = []
        for fold in self.folds():
            for split in self.available_splits:
                lists = self.build_split(fold, split)
                written.append(cache.write(fold, split, lists, self.describe()))
                self._lists[(fold, split)] = lists
        return written

    # --- FoldedDataset ----------------------------------------------------------------------
    def classes(self, fold: int, split: str) -> list[int]:
        return list(self.lists(fold, split).classes)

    def items(self, fold: int, split: str, class_id: int) -> list[str]:
        lists = self.lists(fold, split)
        if class_id not in lists.items_by_class:
            raise DatasetError(f"class {class_id} is not a {split} class of {self.name} fold "
                               f"{fold}; its {split} classes are {lists.classes}")
        return list(lists.items_by_class[class_id])

    def query_items(self, fold: int, split: str) -> list[str]:
        return list(self.lists(fold, split).queries)

    def item_classes(self, fold: int, split: str, item: str) -> list[int]:
        return list(self.lists(fold, split).present.get(item, []))

    def pairs(self, fold: int, split: str) -> list[tuple[str, int]]:
        return self.lists(fold, split).pair_list()

    def describe(self) -> dict:
        return {**super().describe(), "options": self.list_options()}


class TestOnlyDataset(ListedDataset):
    """One fold whose classes are all novel: cross-domain targets and personalization sets.

    ``val`` and ``test`` are the same split; there is no ``train`` split (PATNet trains on
    PASCAL and tests on these; PerSAM has no training classes).
    """

    n_folds = 1
    available_splits: ClassVar[tuple[str, ...]] = ("test",)
    split_alias: ClassVar[dict[str, str]] = {"val": "test"}
    # Where the dataset may sit under ``root`` and the entries that identify it there.
    root_candidates: ClassVar[tuple[str, ...]] = ("",)
    root_markers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path, cache_dir: str | None = None) -> None:
        # No list options: an unknown dataset_args key is a TypeError, never ignored.
        super().__init__(root, cache_dir=cache_dir)

    @functools.cached_property
    def base(self) -> Path:
        """The dataset folder found under ``root`` (a clear error with the layout if not)."""
        return find_root(self.root, self.root_candidates, self.root_markers, self.name,
                         self.layout)

    def canonical_split(self, split: str) -> str:
        if split == "train":
            raise DatasetError(f"{self.name} is test-only: it has no training classes. "
                               "Train on another dataset (PATNet trains on pascal5i) and "
                               "evaluate with split=test.")
        return super().canonical_split(split)

    def folder_lists(self, by_class: dict[int, list[str]], where: Path) -> SplitLists:
        """Lists where each item belongs to exactly one class; a class without images is
        an error (dropping it would silently raise the mean over classes)."""
        empty = [self.class_name(c) for c, v in sorted(by_class.items()) if not v]
        if empty:
            raise DatasetError(f"{self.name}: no images for class(es) {', '.join(empty)} under "
                               f"{where}.\nExpected layout:\n{self.layout}")
        by_class = dict(sorted(by_class.items()))
        queries = [i for v in by_class.values() for i in v]
        present = {i: [c] for c, v in by_class.items() for i in v}
        return SplitLists(sorted(by_class), by_class, queries, present)
