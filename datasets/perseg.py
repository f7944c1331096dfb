"""PerSeg: one-shot personalization (PerSAM), ``Images/<object>/<nn>.jpg`` with
``Annotations/<object>/<nn>.png``.

Each object is its own class (ids 1..N in sorted folder order) and there are no training
classes, so the dataset has one fold whose ``test`` (= ``val``) split holds every object.
PerSAM's protocol (``persam.py``, ``eval_miou.py``): image ``00`` of each object is the
reference and every other image of the object is a target once; the ``persam`` preset
does this with the ``fixed_reference`` sampler. Foreground is any non-zero mask pixel,
as in PerSAM's evaluation (masks are 0/1 palette PNGs there, 0/255 elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from refseg_bench.datasets.cached import TestOnlyDataset
from refseg_bench.datasets.layout import stems
from refseg_bench.datasets.lists import SplitLists
from refseg_bench.imageio import read_image, read_label

LAYOUT = """\
<root>/                      (or <root>/PerSeg, <root>/data)
  Images/<object>/<nn>.jpg       e.g. Images/cat/00.jpg (00 is the reference)
  Annotations/<object>/<nn>.png  its mask: non-zero = object (0/1 palette or 0/255)"""


class PerSeg(TestOnlyDataset):
    name = "perseg"
    default_protocol = "persam"
    layout = LAYOUT
    root_candidates = ("", "PerSeg", "data")
    root_markers = ("Images", "Annotations")

    def __init__(self, root: str | Path, cache_dir: str | None = None) -> None:
        super().__init__(root, cache_dir=cache_dir)
        self._objects: list[str] | None = None

    def sources(self) -> list[Path]:
        return [self.base / "Images", self.base / "Annotations"]

    def objects(self) -> list[str]:
        if self._objects is None:
            with os.scandir(self.base / "Images") as it:
                names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
            self._objects = names
        return self._objects

    @property
    def class_names(self) -> list[str]:
        return list(self.objects())

    def build_split(self, fold: int, split: str) -> SplitLists:
        by_class = {}
        for c, obj in enumerate(self.objects(), start=1):
            masks = stems(self.base / "Annotations" / obj, ".png")
            images = set(stems(self.base / "Images" / obj, ".jpg"))
            by_class[c] = [f"{obj}/{s}" for s in masks if s in images]
        return self.folder_lists(by_class, self.base)

    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.base / "Images" / f"{item}.jpg")

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        fg = (read_label(self.base / "Annotations" / f"{item}.png") > 0).astype(np.uint8)
        return fg if self.class_name(class_id) == item.split("/")[0] else np.zeros_like(fg)
