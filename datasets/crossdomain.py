"""Cross-domain few-shot targets of PATNet (ECCV'22): Deepglobe, ISIC2018, Chest X-ray.

All three are test-only, one fold, every class novel (PATNet trains on PASCAL). Layouts
and rules follow PATNet ``data/deepglobe.py``, ``data/isic.py``, ``data/lung.py``: masks
binarised at 128 (0/1 masks read as such), 600 episodes with class = episode mod number of
classes (``round_robin``) and query and supports random from the class. FSS-1000, the
fourth target, is ``fss1000``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.cached import TestOnlyDataset
from refseg_bench.datasets.layout import binarize, read_lines, stems
from refseg_bench.datasets.lists import SplitLists
from refseg_bench.imageio import read_image, read_label

DEEPGLOBE_LAYOUT = """\
<root>/                       (or <root>/Deepglobe)
  <c>/test/origin/<tile>.jpg      c = 1..6: tiles cut by PATNet data/preprocess.py
  <c>/test/groundtruth/<tile>.png binary mask of class c in that tile (255 = class)"""

# PATNet preprocess.py labelset, read through cv2 (BGR): [0,255,255] is RGB (255,255,0)
# agriculture, [255,255,0] is RGB (0,255,255) urban, and so on (likely: inferred from the
# DeepGlobe colour legend and cv2's channel order; no source names the folders).
DEEPGLOBE_CLASSES = ["agriculture_land", "urban_land", "rangeland", "forest_land", "water",
                     "barren_land"]


class Deepglobe(TestOnlyDataset):
    name = "deepglobe"
    default_protocol = "patnet-cdfss"
    layout = DEEPGLOBE_LAYOUT
    root_candidates = ("", "Deepglobe")
    root_markers = ("1/test/origin",)

    def sources(self) -> list[Path]:
        return [self.base / str(c) / "test" / "origin" for c in range(1, 7)]

    @property
    def class_names(self) -> list[str]:
        return list(DEEPGLOBE_CLASSES)

    def build_split(self, fold: int, split: str) -> SplitLists:
        by_class = {}
        for c in range(1, 7):
            tiles = set(stems(self.base / str(c) / "test" / "groundtruth", ".png"))
            by_class[c] = [f"{c}/{t}" for t in stems(self.base / str(c) / "test" / "origin",
                                                       ".jpg") if t in tiles]
        return self.folder_lists(by_class, self.base)

    def load_image(self, item: str) -> np.ndarray:
        c, tile = item.split("/")
        return read_image(self.base / c / "test" / "origin" / f"{tile}.jpg")

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        c, tile = item.split("/")
        fg = binarize(read_label(self.base / c / "test" / "groundtruth" / f"{tile}.png"))
        return fg if int(c) == class_id else np.zeros_like(fg)


ISIC_LAYOUT = """\
<root>/                                       (or <root>/ISIC)
  ISIC2018_Task1-2_Training_Input/<c>/<id>.jpg  PATNet layout, c = 1 nevus, 2 melanoma,
                                                3 seborrheic_keratosis (from class_id.csv)
  ISIC2018_Task1-2_Training_Input/<id>.jpg      or the official flat layout: classes are
                                                then read from the shipped class_id.csv
  ISIC2018_Task1_Training_GroundTruth/<id>_segmentation.png   lesion mask (0/255)"""

# PATNet data/isic/class_id.csv labels; folder numbers as in DMTNet's split script (a PATNet
# follow-up): 1 nevus, 2 melanoma, 3 seborrheic_keratosis.
ISIC_CLASSES = ["nevus", "melanoma", "seborrheic_keratosis"]
ISIC_INPUT = "ISIC2018_Task1-2_Training_Input"
ISIC_GT = "ISIC2018_Task1_Training_GroundTruth"


class Isic2018(TestOnlyDataset):
    name = "isic2018"
    default_protocol = "patnet-cdfss"
    layout = ISIC_LAYOUT
    root_candidates = ("", "ISIC")
    root_markers = (ISIC_INPUT, ISIC_GT)

    def sources(self) -> list[Path]:
        return [self.base / ISIC_INPUT, self.base / ISIC_GT]

    @property
    def class_names(self) -> list[str]:
        return list(ISIC_CLASSES)

    def patnet_layout(self) -> bool:
        return (self.base / ISIC_INPUT / "1").is_dir()

    def build_split(self, fold: int, split: str) -> SplitLists:
        masks = set(stems(self.base / ISIC_GT, "_segmentation.png"))
        by_class: dict[int, list[str]] = {c: [] for c in (1, 2, 3)}
        if self.patnet_layout():
            for c in by_class:
                by_class[c] = [s for s in stems(self.base / ISIC_INPUT / str(c), ".jpg")
                               if s in masks]
        else:
            images = set(stems(self.base / ISIC_INPUT, ".jpg"))
            for line in read_lines("pkg:isic2018/class_id.csv")[1:]:
                image_id, label = line.split(",")
                if image_id in images and image_id in masks:
                    by_class[ISIC_CLASSES.index(label) + 1].append(image_id)
        return self.folder_lists(by_class, self.base)

    def image_path(self, item: str) -> Path:
        if self.patnet_layout():
            for c in (1, 2, 3):
                p = self.base / ISIC_INPUT / str(c) / f"{item}.jpg"
                if p.is_file():
                    return p
        return self.base / ISIC_INPUT / f"{item}.jpg"

    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.image_path(item))

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        fg = binarize(read_label(self.base / ISIC_GT / f"{item}_segmentation.png"))
        return fg if class_id in self.item_classes(0, "test", item) else np.zeros_like(fg)


LUNG_LAYOUT = """\
<root>/                     (or <root>/LungSegmentation)
  CXR_png/<id>.png              chest radiographs (Kaggle "chest-xray-masks-and-labels")
  masks/<id>_mask.png           lung masks, 0/255 (masks named <id>.png are accepted too)"""


class ChestXray(TestOnlyDataset):
    name = "chestxray"
    default_protocol = "patnet-cdfss"
    layout = LUNG_LAYOUT
    root_candidates = ("", "LungSegmentation")
    root_markers = ("CXR_png", "masks")

    def sources(self) -> list[Path]:
        return [self.base / "CXR_png", self.base / "masks"]

    @property
    def class_names(self) -> list[str]:
        return ["lungs"]

    def build_split(self, fold: int, split: str) -> SplitLists:
        images = set(stems(self.base / "CXR_png", ".png"))
        # PATNet lists the masks folder and strips "_mask.png" to find the radiograph.
        items = [s for s in stems(self.base / "masks", ".png") if _image_stem(s) in images]
        return self.folder_lists({1: items}, self.base)

    def load_image(self, item: str) -> np.ndarray:
        return read_image(self.base / "CXR_png" / f"{_image_stem(item)}.png")

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        if class_id != 1:
            raise DatasetError(f"chestxray has one class (1 = lungs), got {class_id}")
        return binarize(read_label(self.base / "masks" / f"{item}.png"))


def _image_stem(mask_stem: str) -> str:
    return mask_stem.removesuffix("_mask")
