"""LVIS-92i: COCO2017 images with LVIS v1 annotations, 10 interleaved folds (Matcher).

Matcher (``matcher/data/lvis.py``) keeps the categories with more than ``shot`` images in
each split; fold f's novel (val) classes are the kept val categories at positions
f + 10 v for v < n // 10 (about 92 per fold); its training classes are the kept train
categories that are not novel in fold f. Fold membership therefore depends on the shot:
``fold_shot`` (default 1) reproduces Matcher's 1-shot folds, 5 its 5-shot folds.

Differences from Matcher, by necessity: Matcher reads its own ``lvis_train.pkl`` /
``lvis_val.pkl`` (derived from LVIS; we do not unpickle downloaded files), so the lists here
are derived from ``lvis_v1_{train,val}.json`` directly, categories in ascending id order
(likely the pkl's order), images sorted by name, and an image counts for a class only if
the union of the class's instances covers at least one pixel. Masks are that union
(``overlap: union``, Matcher's rule, under which a pixel covered by two classes'
instances is foreground of both; ``overlap: ignore`` marks such pixels 255 instead, which
training on LVIS base classes should use so no novel pixel is ever foreground).
Class ids are the LVIS category ids (1-1203 in LVIS v1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.cached import ListedDataset, check_choice
from refseg_bench.datasets.instances import InstanceStore, open_store
from refseg_bench.datasets.layout import find_root, missing_from_listing, require_files
from refseg_bench.datasets.lists import SplitLists
from refseg_bench.errors import ConfigError
from refseg_bench.imageio import read_image

LAYOUT = """\
<root>/                          (or <root>/LVIS)
  train2017/<12 digits>.jpg          COCO2017 images (or coco/train2017/, as Matcher has it)
  val2017/<12 digits>.jpg            (or coco/val2017/)
  lvis_v1_train.json                 LVIS v1 annotations (or annotations/lvis_v1_train.json)
  lvis_v1_val.json"""

SUBSETS = {"train": "train", "val": "val"}
N_FOLDS = 10


def lvis_item(img: dict) -> str:
    """``train2017/000000391895`` from an LVIS image entry (``coco_url`` names the folder:
    LVIS v1 val images come from both COCO2017 train and val)."""
    if "coco_url" in img:
        folder, name = str(img["coco_url"]).rstrip("/").split("/")[-2:]
        return f"{folder}/{Path(name).stem}"
    return f"train2017/{Path(img['file_name']).stem}"


class Lvis92i(ListedDataset):
    name = "lvis92i"
    n_folds = N_FOLDS
    default_protocol = "matcher"
    layout = LAYOUT

    def __init__(self, root: str | Path, fold_shot: int = 1, overlap: str = "union",
                 cache_dir: str | None = None) -> None:
        if int(fold_shot) < 1:
            raise ConfigError(f"dataset option fold_shot must be >= 1, got {fold_shot}")
        check_choice("overlap", overlap, ("ignore", "union"))
        super().__init__(root, cache_dir=cache_dir, fold_shot=int(fold_shot), overlap=overlap)
        self._base: Path | None = None
        self._stores: dict[str, InstanceStore] = {}
        self._by_class: dict[str, dict[int, list[str]]] = {}

    @property
    def base(self) -> Path:
        if self._base is None:
            first: DatasetError | None = None
            for required in ("lvis_v1_val.json", "annotations/lvis_v1_val.json"):
                try:
                    self._base = find_root(self.root, ("", "LVIS"), (required,), self.name,
                                           LAYOUT)
                    break
                except DatasetError as err:
                    first = first or err
            else:
                raise first
        return self._base

    def annotation_file(self, subset: str) -> Path:
        direct = self.base / f"lvis_v1_{subset}.json"
        return direct if direct.is_file() else self.base / "annotations" / direct.name

    def image_path(self, item: str) -> Path:
        coco = self.base / "coco"
        return (coco if coco.is_dir() else self.base) / f"{item}.jpg"

    def sources(self) -> list[Path]:
        return [self.annotation_file(s) for s in SUBSETS.values()]

    # --- stores ---------------------------------------------------------------------------
    def store(self, subset: str, force: bool = False) -> InstanceStore:
        if subset in self._stores and not force:
            return self._stores[subset]
        src = self.annotation_file(subset)
        require_files([src], self.name, "annotation files", LAYOUT)
        store, _ = open_store(src, self.cache_folder() / f"lvis_v1_{subset}.sqlite", lvis_item,
                              force, self.log)
        self._stores[subset] = store
        return store

    def prepare_sources(self, force: bool) -> None:
        for subset in SUBSETS.values():
            self.store(subset, force)

    def images_by_class(self, subset: str) -> dict[int, list[str]]:
        """category id -> sorted images where the class covers at least one pixel."""
        if subset not in self._by_class:
            out: dict[int, list[str]] = {}
            rows = self.store(subset).areas(self.options["overlap"])  # ordered by item
            for item, cat, area in rows:
                if area > 0:
                    out.setdefault(int(cat), []).append(item)
            self._by_class[subset] = out
        return self._by_class[subset]

    # --- classes ----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        cats = sorted(self.store("val").meta()["categories"], key=lambda c: c["id"])
        if [c["id"] for c in cats] != list(range(1, len(cats) + 1)):
            raise DatasetError("LVIS category ids are expected to be 1..N (LVIS v1); found "
                               "gaps, so class ids cannot equal category ids")
        return [c["name"] for c in cats]

    def _kept(self, subset: str) -> list[int]:
        k = self.options["fold_shot"]
        return sorted(c for c, v in self.images_by_class(subset).items() if len(v) > k)

    def novel(self, fold: int) -> list[int]:
        kept = self._kept("val")
        return [kept[fold + N_FOLDS * v] for v in range(len(kept) // N_FOLDS)]

    def build_split(self, fold: int, split: str) -> SplitLists:
        novel = self.novel(fold)
        classes = [c for c in self._kept("train") if c not in novel] if split == "train" \
            else sorted(novel)
        by_image = self.images_by_class(SUBSETS[split])
        by_class = {c: list(by_image[c]) for c in classes}
        present: dict[str, list[int]] = {}
        for c in classes:
            for item in by_class[c]:
                present.setdefault(item, []).append(c)
        queries = sorted(present)
        self._check_images(queries)
        return SplitLists(classes, by_class, queries, {k: sorted(v) for k, v in present.items()})

    def _check_images(self, items: list[str]) -> None:
        for folder in sorted({i.split("/", 1)[0] for i in items}):
            names = (i.split("/", 1)[1] + ".jpg" for i in items if i.startswith(folder + "/"))
            where = self.image_path(f"{folder}/x").parent
            gone = missing_from_listing(where, names)
            require_files([where / g for g in gone], self.name, "images", LAYOUT)

    # --- pixels ---------------------------------------------------------------------------
    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.image_path(item))

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        for subset in SUBSETS.values():
            store = self.store(subset)
            size = store.image_size(item)
            if size is not None:
                mask = store.mask(item, class_id, self.options["overlap"])
                return mask if mask is not None else np.zeros(size, np.uint8)
        raise DatasetError(f"{item} is in neither LVIS annotation file")
