"""Replicas of the real layouts for the replay tests, at the scale of the shipped lists.

The official loaders open every image and label of an episode, but nothing in them depends
on the pixels for the draw order of the HSNet family, so every file is a link to one tiny
image (one JPEG, one greyscale PNG): thousands of files cost a few milliseconds each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from refseg_bench.datasets.layout import read_lines
from refseg_bench.replay.official import hsnet_coco_orders


def tiny_sources(folder: Path) -> tuple[Path, Path]:
    """One 8 x 8 JPEG and one 8 x 8 greyscale PNG (all background)."""
    folder.mkdir(parents=True, exist_ok=True)
    jpg, png = folder / "tiny.jpg", folder / "tiny.png"
    Image.fromarray(np.full((8, 8, 3), 127, np.uint8)).save(jpg)
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(png)
    return jpg, png


def link(target: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def voc_for_hsnet_lists(root: Path) -> Path:
    """``root/VOC2012`` with every image of HSNet's four val pair lists (shipped)."""
    jpg, png = tiny_sources(root / "_src")
    ids = {line.split("__")[0] for f in range(4)
           for line in read_lines(f"pkg:pascal5i/hsnet/val/fold{f}.txt")}
    for i in sorted(ids):
        link(jpg, root / "VOC2012" / "JPEGImages" / f"{i}.jpg")
        link(png, root / "VOC2012" / "SegmentationClassAug" / f"{i}.png")
    return root


def coco_for_hsnet_lists(root: Path, folds) -> Path:
    """``root/COCO2014`` with the val2014 images and label PNGs of HSNet's val lists."""
    jpg, png = tiny_sources(root / "_src")
    items = {i for f in folds for pool in hsnet_coco_orders(f).values() for i in pool}
    for item in sorted(items):
        subset, stem = item.split("/")
        link(jpg, root / "COCO2014" / subset / f"{stem}.jpg")
        link(png, root / "COCO2014" / "annotations" / subset / f"{stem}.png")
    return root


def fss_for_hsnet_lists(root: Path, split: str = "test") -> Path:
    """``root/FSS-1000/<class>/<1..10>.{jpg,png}`` for the classes of HSNet's ``split``."""
    jpg, png = tiny_sources(root / "_src")
    for name in read_lines(f"pkg:fss1000/{split}.txt"):
        for k in range(1, 11):
            link(jpg, root / "FSS-1000" / name / f"{k}.jpg")
            link(png, root / "FSS-1000" / name / f"{k}.png")
    return root


# --- PFENet-family replica: images that say who they are --------------------------------
H, W = 48, 64  # 3072 pixels: one 48 x 44 object (2112) passes the 2048-pixel rule


def colour_of(k: int) -> tuple[int, int, int]:
    """Constant colour of image ``k`` (< 256): decodable after JPEG compression."""
    return 16 * (k // 16) + 8, 16 * (k % 16) + 8, 128


def voc_identified(root: Path, n: int = 40, fold: int = 0, seed: int = 0) -> dict:
    """``root/VOC2012`` with ``n`` images of constant colours (``colours``: ``"a,b"`` ->
    item, see ``colour_of``) and greyscale labels: one big object (a novel class of ``fold``
    in most images, else a base class) plus small ones (some novel: present but not listed),
    with a 255 band. Also the PFENet-format val list and BAM's base-label folder."""
    rng = np.random.default_rng(seed)
    novel = list(range(5 * fold + 1, 5 * fold + 6))
    base = root / "VOC2012"
    items, colours = [], {}
    for k in range(n):
        item = f"2009_{k:06d}"
        big = novel[k % 5] if k < n - 5 else int(rng.choice([c for c in range(1, 21)
                                                              if c not in novel]))
        label = np.zeros((H, W), np.uint8)
        label[:, :44] = big
        label[:, 44] = 255
        for y in (4, 26):
            if rng.random() < 0.6:  # mostly novel: a second class present but not listed
                small = rng.choice(novel) if rng.random() < 0.7 else rng.integers(1, 21)
                label[y:y + 10, 50:60] = int(small)
        Image.fromarray(np.full((H, W, 3), colour_of(k), np.uint8)).save(
            _mk(base / "JPEGImages" / f"{item}.jpg"), quality=95)
        for folder in (base / "SegmentationClassAug", root / "base" / "val" / str(fold)):
            Image.fromarray(label, mode="L").save(_mk(folder / f"{item}.png"))
        items.append(item)
        a, b = colour_of(k)[:2]
        colours[f"{(a - 8) // 16},{(b - 8) // 16}"] = item
    val_list = root / "val.txt"
    val_list.write_text("".join(f"JPEGImages/{i}.jpg SegmentationClassAug/{i}.png\n"
                                for i in items))
    return {"root": root, "data_root": str(base), "data_list": str(val_list),
            "base_data_root": str(root / "base"), "colours": colours, "items": items}


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
