"""FSS-1000: 1000 classes of 10 images each, ``<class>/<n>.jpg`` with ``<class>/<n>.png``.

One fold. ``class_split: hsnet`` (default) uses HSNet's 520 / 240 / 240 class lists
(``data/splits/fss/{trn,val,test}.txt``, shipped in ``datasets/lists/fss1000``; HSNet cites
FSS-1000 issue #7) for train / val / test; ids follow HSNet: trn classes sorted by name are
1-520, val 521-760, test 761-1000. ``class_split: disk`` makes every class folder on disk a
test class (for FSS-layout data of your own). Masks are binarised at 128 like HSNet, except
0/1 masks (``layout.binarize``). Each test image is the query once under ``every_image``:
240 x 10 = 2,400 episodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.cached import ListedDataset, check_choice
from refseg_bench.datasets.layout import binarize, find_root, natural_key, read_lines
from refseg_bench.datasets.lists import SplitLists
from refseg_bench.imageio import read_image, read_label

LAYOUT = """\
<root>/                     (or <root>/FSS-1000, <root>/FSS-1000/data, <root>/data)
  <class>/<n>.jpg               e.g. ab_wheel/1.jpg ... ab_wheel/10.jpg
  <class>/<n>.png               its mask: 0/255 (binarised at 128) or 0/1"""

HSNET_FILES = {"train": "trn", "val": "val", "test": "test"}


class Fss1000(ListedDataset):
    name = "fss1000"
    train_images_base_only = True  # one class per image, train and test classes disjoint
    n_folds = 1
    default_protocol = "hsnet"
    default_split = "test"  # published FSS-1000 numbers are on the 240 test classes
    layout = LAYOUT
    available_splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    split_alias: ClassVar[dict[str, str]] = {}

    def __init__(self, root: str | Path, class_split: str = "hsnet",
                 missing_classes: str = "error", cache_dir: str | None = None) -> None:
        check_choice("class_split", class_split, ("hsnet", "disk"))
        check_choice("missing_classes", missing_classes, ("error", "skip"))
        super().__init__(root, cache_dir=cache_dir, class_split=class_split,
                         missing_classes=missing_classes)
        self._base: Path | None = None
        self._names: list[str] | None = None
        self._split_names: dict[str, list[str]] | None = None

    @property
    def base(self) -> Path:
        if self._base is None:
            self._base = self._find_base()
        return self._base

    def _find_base(self) -> Path:
        for sub in ("", "FSS-1000", "FSS-1000/data", "data"):
            folder = self.root / sub if sub else self.root
            if folder.is_dir() and any(_has_pairs(d) for d in _subdirs(folder)[:50]):
                return folder
        # Nothing FSS-shaped found: report the expected layout.
        return find_root(self.root, ("", "FSS-1000", "FSS-1000/data", "data"),
                         ("<class>/1.jpg",), self.name, LAYOUT)

    def sources(self) -> list[Path]:
        return [self.base]

    def _splits(self) -> dict[str, list[str]]:
        """Class names per split, sorted within each split (HSNet's id order)."""
        if self._split_names is None:
            if self.options["class_split"] == "disk":
                names = sorted(d.name for d in _subdirs(self.base) if _has_pairs(d))
                self._split_names = {"train": [], "val": [], "test": names}
            else:
                self._split_names = {s: sorted(read_lines(f"pkg:fss1000/{f}.txt"))
                                     for s, f in HSNET_FILES.items()}
        return self._split_names

    @property
    def class_names(self) -> list[str]:
        s = self._splits()
        return s["train"] + s["val"] + s["test"]

    def _id_offset(self, split: str) -> int:
        s = self._splits()
        return {"train": 0, "val": len(s["train"]),
                "test": len(s["train"]) + len(s["val"])}[split]

    def build_split(self, fold: int, split: str) -> SplitLists:
        names = self._splits()[split]
        offset = self._id_offset(split)
        absent = [n for n in names if not (self.base / n).is_dir()]
        if absent and self.options["missing_classes"] == "error":
            raise DatasetError(
                f"{self.name}: {len(absent)} {split} class folder(s) missing under {self.base}"
                f", e.g. {', '.join(absent[:5])}.\nExpected layout:\n{LAYOUT}\nUse the full "
                f"FSS-1000 archive, or dataset_args.missing_classes=skip to use what is there.")
        by_class: dict[int, list[str]] = {}
        for k, n in enumerate(names):
            if n in absent:
                continue
            items = _items(self.base / n)
            if items:
                by_class[offset + k + 1] = items
        queries = [i for c in sorted(by_class) for i in by_class[c]]
        present = {i: [c] for c in by_class for i in by_class[c]}
        return SplitLists(sorted(by_class), by_class, queries, present)

    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.base / f"{item}.jpg")

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        fg = binarize(read_label(self.base / f"{item}.png"))
        if self.class_name(class_id) != item.split("/")[0]:
            return np.zeros_like(fg)  # another class's image: no pixel of class_id
        return fg


def _subdirs(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted((Path(e.path) for e in it if e.is_dir()), key=lambda p: p.name)


def _has_pairs(folder: Path) -> bool:
    return (folder / "1.jpg").is_file() and (folder / "1.png").is_file()


def _items(folder: Path) -> list[str]:
    """``<class>/<n>`` for every ``<n>.jpg`` with a ``<n>.png``, in numeric order."""
    with os.scandir(folder) as it:
        names = {e.name for e in it}
    stems = [n[:-4] for n in names if n.endswith(".jpg") and n[:-4] + ".png" in names]
    return [f"{folder.name}/{s}" for s in sorted(stems, key=natural_key)]
