"""COCO-20i: COCO2014 images, 80 classes in 4 folds of 20 (docs/protocols.md §2, §4).

- ``class_split``: ``interleaved`` (default; FWB, used by PFENet, HSNet, BAM, Matcher,
  VRP-SAM, FSSAM: fold i = ids {i+1, i+5, ..., i+77}) or ``contiguous`` (PANet: fold i =
  ids 20i+1 .. 20i+20). Class ids 1-80 number the categories in ascending COCO id order.
- ``masks``: ``instances`` (default) builds class masks from
  ``annotations/instances_*2014.json`` through pycocotools; ``png`` reads pre-rendered
  label PNGs (HSNet/PFENet/BAM: pixel value = class id).
- ``overlap`` (instances only) decides which class a pixel covered by two classes'
  instances belongs to, and so the pixel counts behind the 2048-pixel rule:
  ``rendered`` (default) reproduces the official label PNGs from the JSON: non-crowd
  instances painted in file order, a later one over an earlier one, crowd regions
  background (the script the PFENet/BAM authors distribute, e.g. chunbolang/HPA
  ``util/coco_parse_script.py``); ``ignore`` marks shared pixels 255 in both classes (a
  novel object is never foreground of a base class) and keeps crowd regions; ``union``
  is PANet's plain union, crowd included, where a shared pixel is foreground of both.
  Polygons are rasterised by pycocotools, the official script used ``cv2.fillPoly``:
  object borders can differ by a pixel, so an image near 2048 pixels may move.
- Lists follow the 2048-pixel rule on those counts (PFENet's ``make_dataset``).
  ``train_filter: bam`` drops training images with a novel pixel.
- ``query_order``: ``bam`` walks val queries in the order of the BAM-format val list
  (shipped; as in VRP-SAM ``data/splits/lists/coco/val.txt``), which decides the first N
  images of file-order protocols; ``sorted`` sorts by file name. Train lists are sorted.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.cached import ListedDataset, check_choice
from refseg_bench.datasets.census import cached_areas
from refseg_bench.datasets.instances import OVERLAP_MODES, InstanceStore, open_store
from refseg_bench.datasets.layout import find_root, missing_from_listing, read_lines, require_files
from refseg_bench.datasets.lists import MIN_PIXELS, SplitLists, file_signature, lists_from_areas
from refseg_bench.imageio import read_image, read_label

LAYOUT = """\
<root>/                                   (or <root>/COCO2014, <root>/MSCOCO14)
  train2014/COCO_train2014_<12 digits>.jpg
  val2014/COCO_val2014_<12 digits>.jpg
  annotations/instances_train2014.json    masks=instances (default)
  annotations/instances_val2014.json
  annotations/train2014/<image stem>.png  masks=png: rendered labels, pixel = class id 1-80
  annotations/val2014/<image stem>.png"""

SUBSETS = {"train": "train2014", "val": "val2014"}


def coco_categories() -> list[tuple[int, str]]:
    """The 80 (COCO category id, name) pairs in ascending id order (shipped list)."""
    rows = [line.split("\t") for line in read_lines("pkg:coco20i/categories.tsv")]
    return [(int(i), n) for i, n in rows]


@functools.cache
def _bam_val_order() -> tuple[str, ...]:
    """val2014 items in the order of the BAM-format val list (40,137 images)."""
    return tuple(f"val2014/COCO_val2014_{int(n):012d}"
                 for n in read_lines("pkg:coco20i/bam_val2014_order.txt.gz"))


class Coco20i(ListedDataset):
    name = "coco20i"
    n_folds = 4
    default_protocol = "hsnet"
    layout = LAYOUT

    def __init__(self, root: str | Path, class_split: str = "interleaved",
                 masks: str = "instances", train_filter: str = "none",
                 min_pixels: int = MIN_PIXELS, query_order: str = "bam",
                 overlap: str = "rendered", workers: int = 2,
                 cache_dir: str | None = None) -> None:
        check_choice("class_split", class_split, ("interleaved", "contiguous"))
        check_choice("masks", masks, ("instances", "png"))
        check_choice("train_filter", train_filter, ("none", "bam"))
        check_choice("query_order", query_order, ("bam", "sorted"))
        check_choice("overlap", overlap, OVERLAP_MODES)
        super().__init__(root, cache_dir=cache_dir, class_split=class_split, masks=masks,
                         train_filter=train_filter, min_pixels=int(min_pixels),
                         query_order=query_order,
                         overlap=overlap if masks == "instances" else "none")
        self.workers = workers
        self._base: Path | None = None
        self._categories = coco_categories()
        self._class_of = {cat: i + 1 for i, (cat, _) in enumerate(self._categories)}
        self._stores: dict[str, InstanceStore] = {}
        self._areas: dict[str, dict[str, dict[int, int]]] = {}

    # --- layout ---------------------------------------------------------------------------
    @property
    def base(self) -> Path:
        if self._base is None:
            need = ("train2014", "val2014", "annotations")
            self._base = find_root(self.root, ("", "COCO2014", "MSCOCO14"), need, self.name,
                                   LAYOUT)
        return self._base

    def annotation_file(self, subset: str) -> Path:
        return self.base / "annotations" / f"instances_{subset}.json"

    def image_path(self, item: str) -> Path:
        return self.base / f"{item}.jpg"

    def sources(self) -> list[Path]:
        if self.options["masks"] == "png":
            return [self.base / "annotations" / s for s in SUBSETS.values()]
        return [self.annotation_file(s) for s in SUBSETS.values()]

    # --- classes ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return [n for _, n in self._categories]

    def novel(self, fold: int) -> list[int]:
        if self.options["class_split"] == "interleaved":
            return [fold + 1 + 4 * v for v in range(20)]
        return list(range(20 * fold + 1, 20 * fold + 21))

    def classes(self, fold: int, split: str) -> list[int]:
        self.check_fold(fold)
        novel = self.novel(fold)
        if self.canonical_split(split) == "train":
            return [c for c in range(1, 81) if c not in novel]
        return novel

    # --- census and stores ----------------------------------------------------------------
    def store(self, subset: str) -> InstanceStore:
        """The instance-mask store of ``subset`` (built from the JSON on first use)."""
        if subset not in self._stores:
            self._stores[subset] = self._open_store(subset, force=False)
        return self._stores[subset]

    def _open_store(self, subset: str, force: bool) -> InstanceStore:
        src = self.annotation_file(subset)
        require_files([src], self.name, "annotation files", LAYOUT)
        store, built = open_store(src, self.cache_folder() / f"instances_{subset}.sqlite",
                                  lambda img: f"{subset}/{Path(img['file_name']).stem}", force,
                                  self.log, label_maps=True)
        if built:
            self._check_categories(store, src)
        return store

    def _check_categories(self, store: InstanceStore, src: Path) -> None:
        found = [(c["id"], c["name"]) for c in sorted(store.meta()["categories"],
                                                      key=lambda c: c["id"])]
        if found != self._categories:
            diff = sorted(set(found) ^ set(self._categories))[:6]
            raise DatasetError(f"{src}: categories differ from COCO's 80 (e.g. {diff}); "
                               "COCO-20i needs the official instances_*2014.json")

    def areas(self, subset: str, force: bool = False) -> dict[str, dict[int, int]]:
        """``item -> {class id 1-80: pixels}`` of every image of ``subset`` with a class."""
        if subset in self._areas and not force:
            return self._areas[subset]
        if self.options["masks"] == "png":
            folder = self.base / "annotations" / subset
            paths = {f"{subset}/{p.stem}": p for p in sorted(folder.glob("*.png"))}
            if not paths:
                require_files([folder / "<stem>.png"], self.name, "label PNG folders", LAYOUT)
            out = cached_areas(self.cache_folder() / f"areas-png-{subset}.json", paths,
                               file_signature([folder]), self.workers, self.log, force)
        else:
            if force:
                self._stores[subset] = self._open_store(subset, force=True)
            out = {}
            for item, cat, area in self.store(subset).areas(self.options["overlap"]):
                if area > 0:
                    out.setdefault(item, {})[self._class_of[cat]] = int(area)
        self._areas[subset] = out
        return out

    def prepare_sources(self, force: bool) -> None:
        for subset in SUBSETS.values():
            self.areas(subset, force)

    # --- lists ----------------------------------------------------------------------------
    def _order(self, subset: str, items) -> list[str]:
        items = sorted(items)
        if subset != "val2014" or self.options["query_order"] != "bam":
            return items
        known = set(items)
        first = [i for i in _bam_val_order() if i in known]
        seen = set(first)
        return first + [i for i in items if i not in seen]  # images outside the BAM list last

    def build_split(self, fold: int, split: str) -> SplitLists:
        subset = SUBSETS[split]
        areas = self.areas(subset)
        classes = self.classes(fold, split)
        base_only = classes if split == "train" and self.options["train_filter"] == "bam" \
            else None
        out = lists_from_areas(areas, self._order(subset, areas), classes,
                               self.options["min_pixels"], base_only)
        gone = missing_from_listing(self.base / subset,
                                    (q.split("/", 1)[1] + ".jpg" for q in out.queries))
        require_files([self.base / subset / g for g in gone], self.name, "images", LAYOUT)
        return out

    # --- pixels ---------------------------------------------------------------------------
    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.image_path(item))

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        subset = item.split("/", 1)[0]
        if self.options["masks"] == "png":
            plane = read_label(self.base / "annotations" / f"{item}.png")
            out = (plane == class_id).astype(np.uint8)
            out[plane == self.ignore_index] = self.ignore_index
            return out
        cat = self._categories[class_id - 1][0]
        mask = self.store(subset).mask(item, cat, self.options["overlap"])
        if mask is None:  # class absent from this image: an all-background mask
            size = self.store(subset).image_size(item)
            if size is None:
                raise DatasetError(f"{item} is not an image of {self.annotation_file(subset)}")
            return np.zeros(size, np.uint8)
        return mask
