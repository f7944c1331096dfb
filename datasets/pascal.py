"""PASCAL-5i: VOC2012 images with SBD-augmented labels, 4 folds of 5 novel classes.

Two list conventions (docs/protocols.md §4.2), chosen with ``lists``:

- ``hsnet``: HSNet's (image, class) pair files ``{trn,val}/fold{i}.txt`` (shipped in
  ``datasets/lists/pascal5i/hsnet``; ``split_files`` points at another copy). Fold-i
  training is the union of the other folds' ``trn`` files.
- ``pfenet``: PFENet/BAM image lists made by the 2048-pixel rule from the train pool
  ``voc_sbd_merge_noduplicate.txt`` (5,953 images) and VOC2012 ``val.txt`` (1,449).

``train_filter: bam`` drops every training image that contains a novel-class pixel
(BAM's ``filter_intersection``), in either convention. Label 255 (void and object
boundaries) stays 255 in every mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.cached import ListedDataset, check_choice
from refseg_bench.datasets.census import cached_areas
from refseg_bench.datasets.layout import (
    find_root,
    missing_from_listing,
    read_lines,
    require_files,
)
from refseg_bench.datasets.lists import MIN_PIXELS, SplitLists, file_signature, lists_from_areas
from refseg_bench.imageio import read_image, read_label

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]

LAYOUT = """\
<root>/                      (or <root>/VOC2012, <root>/VOCdevkit/VOC2012)
  JPEGImages/<id>.jpg            VOC2012 images, e.g. 2007_000033.jpg
  SegmentationClassAug/<id>.png  SBD-augmented labels (palette or greyscale PNG):
                                 0 background, 1-20 classes, 255 void / object boundary
  ImageSets/Segmentation/val.txt optional; the shipped copy of VOC2012 val is used otherwise"""


class Pascal5i(ListedDataset):
    name = "pascal5i"
    n_folds = 4
    default_protocol = "hsnet"
    layout = LAYOUT

    def __init__(self, root: str | Path, lists: str = "hsnet", train_filter: str = "none",
                 min_pixels: int = MIN_PIXELS, split_files: str | None = None,
                 train_pool: str | None = None, val_pool: str | None = None,
                 workers: int = 2, cache_dir: str | None = None) -> None:
        check_choice("lists", lists, ("hsnet", "pfenet"))
        check_choice("train_filter", train_filter, ("none", "bam"))
        super().__init__(root, cache_dir=cache_dir, lists=lists, train_filter=train_filter,
                         min_pixels=int(min_pixels), split_files=split_files,
                         train_pool=train_pool, val_pool=val_pool)
        self.workers = workers
        self._base: Path | None = None
        self._areas: dict[str, dict[int, int]] | None = None

    # --- layout ---------------------------------------------------------------------------
    @property
    def base(self) -> Path:
        if self._base is None:
            self._base = find_root(self.root, ("", "VOC2012", "VOCdevkit/VOC2012"),
                                   ("JPEGImages", "SegmentationClassAug"), self.name, LAYOUT)
        return self._base

    def image_path(self, item: str) -> Path:
        return self.base / "JPEGImages" / f"{item}.jpg"

    def label_path(self, item: str) -> Path:
        return self.base / "SegmentationClassAug" / f"{item}.png"

    def sources(self) -> list[Path]:
        return [self.base / "SegmentationClassAug"]

    # --- classes ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(VOC_CLASSES)

    def novel(self, fold: int) -> list[int]:
        """Fold i's novel classes: 5i+1 .. 5i+5 (PFENet util/dataset.py, docs/protocols.md §2.1)."""
        return list(range(5 * fold + 1, 5 * fold + 6))

    def base_classes(self, fold: int) -> list[int]:
        return [c for c in range(1, 21) if c not in self.novel(fold)]

    def classes(self, fold: int, split: str) -> list[int]:
        self.check_fold(fold)
        return self.base_classes(fold) if self.canonical_split(split) == "train" \
            else self.novel(fold)

    # --- lists ----------------------------------------------------------------------------
    def areas(self, force: bool = False) -> dict[str, dict[int, int]]:
        """Class areas of every label in SegmentationClassAug (cached census)."""
        if self._areas is None or force:
            folder = self.base / "SegmentationClassAug"
            paths = {p.stem: p for p in sorted(folder.glob("*.png"))}
            self._areas = cached_areas(self.cache_folder() / "areas-SegmentationClassAug.json",
                                       paths, file_signature([folder]), self.workers,
                                       self.log, force)
        return self._areas

    def prepare_sources(self, force: bool) -> None:
        if self.options["lists"] == "pfenet" or self.options["train_filter"] == "bam":
            self.areas(force)

    def build_split(self, fold: int, split: str) -> SplitLists:
        if self.options["lists"] == "hsnet":
            out = self._hsnet_split(fold, split)
        else:
            out = self._pfenet_split(fold, split)
        self._check_files(out.queries)
        return out

    def _pair_file(self, split: str, fold: int) -> str | Path:
        d = self.options["split_files"]
        rel = f"{'trn' if split == 'train' else 'val'}/fold{fold}.txt"
        return Path(d).expanduser() / rel if d else f"pkg:pascal5i/hsnet/{rel}"

    def _hsnet_split(self, fold: int, split: str) -> SplitLists:
        classes = self.base_classes(fold) if split == "train" else self.novel(fold)
        files = [j for j in range(4) if j != fold] if split == "train" else [fold]
        pairs: list[tuple[str, int]] = []
        for j in files:
            src = self._pair_file(split, j)
            for line in read_lines(src):
                item, _, cls = line.partition("__")
                if not cls.isdigit() or int(cls) not in classes:
                    raise DatasetError(f"{src}: line {line!r} is not '<VOC id>__<class>' with a "
                                       f"class of {classes} (fold {fold}, {split})")
                pairs.append((item, int(cls)))
        if split == "train" and self.options["train_filter"] == "bam":
            areas, allowed = self.areas(), set(classes)
            pairs = [(i, c) for i, c in pairs if set(areas.get(i, {})) <= allowed]
        by_class: dict[int, list[str]] = {c: [] for c in classes}
        present: dict[str, set[int]] = {}
        for item, c in pairs:
            if c not in present.setdefault(item, set()):
                by_class[c].append(item)
                present[item].add(c)
        return SplitLists(classes, by_class, list(present),
                          {k: sorted(v) for k, v in present.items()}, pairs)

    def _pool(self, split: str) -> list[str]:
        opt = self.options["train_pool" if split == "train" else "val_pool"]
        if opt:
            src = opt
        elif split == "val" and (self.base / "ImageSets/Segmentation/val.txt").is_file():
            src = self.base / "ImageSets/Segmentation/val.txt"
        else:
            src = "pkg:pascal5i/pfenet/" + (
                "voc_sbd_merge_noduplicate.txt" if split == "train" else "val.txt")
        # PFENet list lines are "JPEGImages/<id>.jpg SegmentationClassAug/<id>.png".
        return [Path(line.split()[0]).stem for line in read_lines(src)]

    def _pfenet_split(self, fold: int, split: str) -> SplitLists:
        pool = self._pool(split)
        areas = self.areas()
        missing = [i for i in pool if i not in areas]
        require_files([self.label_path(i) for i in missing], self.name, "label files", LAYOUT)
        classes = self.base_classes(fold) if split == "train" else self.novel(fold)
        base_only = classes if split == "train" and self.options["train_filter"] == "bam" \
            else None
        return lists_from_areas(areas, pool, classes, self.options["min_pixels"], base_only)

    def _check_files(self, items: list[str]) -> None:
        for folder, ext, what in (("JPEGImages", ".jpg", "images"),
                                  ("SegmentationClassAug", ".png", "label files")):
            gone = missing_from_listing(self.base / folder, (i + ext for i in items))
            require_files([self.base / folder / g for g in gone], self.name, what, LAYOUT)

    # --- pixels ---------------------------------------------------------------------------
    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.image_path(item))

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        plane = read_label(self.label_path(item))
        out = (plane == class_id).astype(np.uint8)
        out[plane == self.ignore_index] = self.ignore_index
        return out
