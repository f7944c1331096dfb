"""Tiny replicas of the real on-disk layouts (file names, encodings, JSON schemas), written
into a temporary folder by the dataset tests.

Each writer returns what it put there, so tests can compare the loader against it.
Objects are axis-aligned rectangles: big ones (>= 2048 pixels) and small ones (< 2048).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BIG = (40, 60)  # 2400 pixels: passes the 2048-pixel rule
SMALL = (20, 20)  # 400 pixels: does not


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), as SegmentationClassAug PNGs carry it."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def save_jpg(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=85)


def save_png(path: Path, plane: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(plane.astype(np.uint8), mode="P")
        img.putpalette(voc_palette())
    elif mode == "RGB":
        img = Image.fromarray(np.repeat(plane[..., None], 3, axis=2).astype(np.uint8))
    else:
        img = Image.fromarray(plane.astype(np.uint8), mode="L")
    img.save(path)


def paint(h: int, w: int, objects: list[tuple[int, tuple[int, int, int, int]]],
          boundary: bool = False) -> np.ndarray:
    """Label plane with ``(class, (y0, x0, y1, x1))`` rectangles; ``boundary`` draws VOC's
    255 band one pixel outside each rectangle."""
    lab = np.zeros((h, w), np.uint8)
    for c, (y0, x0, y1, x1) in objects:
        if boundary:
            lab[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = 255
        lab[y0:y1, x0:x1] = c
    return lab


@dataclass
class Replica:
    root: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # item -> label plane
    extra: dict = field(default_factory=dict)


# --- PASCAL-5i --------------------------------------------------------------------------
PASCAL_SIZE = (100, 140)
SLOTS = {"primary": (5, 5, 45, 65), "big": (55, 70, 95, 130), "small": (60, 10, 80, 30)}


def _pascal_objects(c: int, j: int) -> list[tuple[int, tuple]]:
    """Image j of class c: c big; j = 1, 5 add a big other class, j = 2, 6 a small one."""
    other = (c + j + 4) % 20 + 1
    objs = [(c, SLOTS["primary"])]
    if j % 4 == 1:
        objs.append((other, SLOTS["big"]))
    if j % 4 == 2:
        objs.append((other, SLOTS["small"]))
    return objs


def make_pascal(tmp: Path, sub: str = "VOC2012") -> Replica:
    """VOC2012 JPEGImages + palette SegmentationClassAug, 8 images per class (ids
    ``2008_00cc0j``); j < 4 go to the val pool, the others to the train pool. Writes HSNet-format
    pair files (pairs with >= 2048 pixels) and PFENet-format pool lists next to it."""
    base = tmp / "data" / sub if sub else tmp / "data"
    rep = Replica(tmp / "data")
    h, w = PASCAL_SIZE
    pools: dict[str, list[str]] = {"train": [], "val": []}
    for c in range(1, 21):
        for j in range(8):
            item = f"2008_00{c:02d}{j:02d}"
            lab = paint(h, w, _pascal_objects(c, j), boundary=True)
            save_jpg(base / "JPEGImages" / f"{item}.jpg", h, w, seed=c * 10 + j)
            save_png(base / "SegmentationClassAug" / f"{item}.png", lab, mode="P")
            rep.labels[item] = lab
            pools["val" if j < 4 else "train"].append(item)
    lists = tmp / "lists"
    for split, hs in (("val", "val"), ("train", "trn")):
        (lists / hs).mkdir(parents=True, exist_ok=True)
        for fold in range(4):
            novel = range(5 * fold + 1, 5 * fold + 6)
            lines = [f"{i}__{c:02d}" for i in pools[split] for c in novel
                     if (rep.labels[i] == c).sum() >= 2048]
            (lists / hs / f"fold{fold}.txt").write_text("\n".join(lines) + "\n")
    (tmp / "train_pool.txt").write_text(
        "".join(f"JPEGImages/{i}.jpg SegmentationClassAug/{i}.png\n" for i in pools["train"]))
    seg = base / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "val.txt").write_text("".join(f"{i}\n" for i in pools["val"]))
    rep.extra.update(split_files=str(lists), train_pool=str(tmp / "train_pool.txt"),
                     pools=pools, base=base)
    return rep


# --- COCO-style instances ---------------------------------------------------------------
def rect_polygon(y0: int, x0: int, y1: int, x1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle_of(plane: np.ndarray, compressed: bool) -> dict:
    """COCO RLE of a 0/1 plane: ``counts`` as a string, or as a list (iscrowd style)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(plane.astype(np.uint8)))
    if compressed:
        return {"size": list(rle["size"]), "counts": rle["counts"].decode()}
    flat = plane.astype(np.uint8).ravel(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(plane.shape), "counts": [int(x) for x in counts]}


def coco_categories() -> list[dict]:
    from refseg_bench.datasets.coco import coco_categories as cats

    return [{"id": i, "name": n, "supercategory": "x"} for i, n in cats()]


COCO_SIZE = (80, 100)
# Objects beside the primary one (the image's class as a big polygon), keyed by (k % 4, j)
# for image j of class k; "other" is class k % 80 + 1. (kind, box): boxes are (y0, x0, y1,
# x1); kinds: poly, crowd (uncompressed RLE, iscrowd=1), rle (compressed RLE), poly2 (one
# annotation of two polygons), first (a polygon written *before* the primary one but with
# a larger annotation id). Areas are chosen so the overlap rule decides the 2048-pixel
# rule: rendered, ignore and union give different lists.
COCO_EXTRAS = {
    (0, 1): [("crowd", (50, 50, 75, 95))],  # 1125 px crowd region
    (1, 1): [("rle", (40, 40, 80, 100))],  # overlaps the primary by 125 px, drawn later
    (2, 2): [("poly", (20, 40, 70, 90))],  # 2500 px drawn over 625 px of the primary
    (3, 2): [("first", (20, 40, 70, 90))],  # the same, but drawn first: the primary wins
    (3, 3): [("crowd", (48, 0, 80, 100))],  # 3200 px crowd region, no overlap
    (0, 3): [("poly2", (50, 5, 75, 45)), ("poly2", (50, 50, 75, 95))],  # 1000 + 1125 px
}


def _coco_objects(k: int, j: int) -> list[tuple[int, tuple, str]]:
    """``(class, box, kind)`` of image j of class k, in file order."""
    other = (k % 80) + 1
    objs = [(k, (5, 5, 45, 65), "poly")]
    extras = [(other, box, kind) for kind, box in COCO_EXTRAS.get((k % 4, j), [])]
    if j == 0 and k % 3 == 0:
        extras.append((other, (60, 70, 75, 85), "poly"))  # small
    if extras and extras[0][2] == "first":
        return extras + objs
    return objs + extras


def _coco_annotation(ann_id: int, img_id: int, cat: dict, objs: list, kind: str) -> dict:
    """One annotation covering the boxes ``objs`` (several only for poly2)."""
    h, w = COCO_SIZE
    plane = np.zeros((h, w), np.uint8)
    for y0, x0, y1, x1 in objs:
        plane[y0:y1, x0:x1] = 1
    if kind in ("poly", "first", "poly2"):
        segm = [p for box in objs for p in rect_polygon(*box)]
    else:
        segm = rle_of(plane, compressed=kind == "rle")
    y0, x0, y1, x1 = objs[0]
    return {"id": ann_id, "image_id": img_id, "category_id": cat["id"], "segmentation": segm,
            "area": float(plane.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": int(kind == "crowd")}


def _coco_image_annotations(img_id: int, objs: list, first_id: int, cats: list
                            ) -> tuple[list[dict], np.ndarray]:
    """The image's annotations in file order and its label plane rendered as the official
    COCO-20i PNGs are: non-crowd instances painted in file order, crowd left at 0."""
    h, w = COCO_SIZE
    anns, lab, i = [], np.zeros((h, w), np.uint8), 0
    while i < len(objs):
        c, box, kind = objs[i]
        boxes = [box]
        while kind == "poly2" and i + 1 < len(objs) and objs[i + 1][2] == "poly2":
            boxes.append(objs[i + 1][1])
            i += 1
        ann_id = first_id + (500_000 if kind == "first" else len(anns))
        anns.append(_coco_annotation(ann_id, img_id, cats[c - 1], boxes, kind))
        if kind != "crowd":
            for y0, x0, y1, x1 in boxes:
                lab[y0:y1, x0:x1] = c
        i += 1
    return anns, lab


def make_coco(tmp: Path, pngs: bool = True) -> Replica:
    """COCO2014 layout: 4 val and 4 train images per class (the class as a big polygon);
    some images add crowd RLEs, a compressed RLE, a small object, a two-polygon annotation,
    or overlapping instances of different classes (``COCO_EXTRAS``). Also the rendered
    label PNGs (pixel = class id), drawn as the official ones: ``Replica.labels``."""
    rep = Replica(tmp / "coco")
    cats = coco_categories()
    h, w = COCO_SIZE
    # Three fold-0 val images get the ids that open the shipped BAM val order, in an order
    # that differs from sorting by name.
    special = {1: 553141, 5: 20925, 9: 470885}
    for subset in ("train2014", "val2014"):
        images, anns = [], []
        for k in range(1, len(cats) + 1):
            for j in range(4):
                img_id = special[k] if subset == "val2014" and k in special and j == 0 \
                    else 1_000_000 + k * 10 + j
                stem = f"COCO_{subset}_{img_id:012d}"
                new, lab = _coco_image_annotations(img_id, _coco_objects(k, j), len(anns) + 1,
                                                   cats)
                anns += new
                images.append({"id": img_id, "file_name": f"{stem}.jpg", "height": h,
                               "width": w, "license": 1})
                save_jpg(rep.root / subset / f"{stem}.jpg", h, w, seed=img_id)
                if pngs:
                    save_png(rep.root / "annotations" / subset / f"{stem}.png", lab)
                rep.labels[f"{subset}/{stem}"] = lab
        doc = {"info": {"year": 2014}, "images": images, "licenses": [{"id": 1}],
               "annotations": anns, "categories": cats}
        path = rep.root / "annotations" / f"instances_{subset}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    return rep


# --- LVIS ---------------------------------------------------------------------------------
def make_lvis(tmp: Path, n_cats: int = 40) -> Replica:
    """LVIS v1 layout (images referenced by ``coco_url``): category k has 3 val images
    (one of them from COCO train2017) and 3 train images, categories 1 and 2 only 2 val
    images; images of even categories also show the next category, so odd categories
    appear in 6 images. Annotations are polygons."""
    rep = Replica(tmp / "lvis")
    h, w = 60, 80
    cats = [{"id": k, "name": f"thing_{k:03d}", "synonyms": [], "frequency": "c"}
            for k in range(1, n_cats + 1)]
    for subset in ("train", "val"):
        images, anns = [], []
        for k in range(1, n_cats + 1):
            n = 2 if subset == "val" and k <= 2 else 3
            for j in range(n):
                img_id = (1 if subset == "train" else 2) * 100_000 + k * 10 + j
                folder = "train2017" if subset == "train" or j == 2 else "val2017"
                url = f"http://images.cocodataset.org/{folder}/{img_id:012d}.jpg"
                images.append({"id": img_id, "coco_url": url, "height": h, "width": w,
                               "neg_category_ids": [], "not_exhaustive_category_ids": []})
                save_jpg(rep.root / folder / f"{img_id:012d}.jpg", h, w, seed=img_id)
                objs = [(k, (5, 5, 30, 40))]
                if k % 2 == 0:  # even categories also show the next (odd) one
                    objs.append((k % n_cats + 1, (35, 45, 55, 75)))
                for c, box in objs:
                    anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": c,
                                 "segmentation": rect_polygon(*box), "bbox": [0, 0, 1, 1],
                                 "area": 1.0})
                rep.labels[f"{folder}/{img_id:012d}"] = paint(h, w, objs)
        doc = {"info": {}, "licenses": [], "images": images, "annotations": anns,
               "categories": cats}
        (rep.root / f"lvis_v1_{subset}.json").write_text(json.dumps(doc))
    return rep


# --- folder-per-class layouts -------------------------------------------------------------
def fss_mask(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(4, 20, 2)
    plane = np.zeros((size, size), np.uint8)
    plane[y0:y0 + 30, x0:x0 + 30] = 255
    return plane


def make_fss(tmp: Path, classes: list[str], n: int = 10, sub: str = "FSS-1000") -> Replica:
    """FSS-1000 layout: ``<class>/<n>.jpg`` and a 0/255 greyscale ``<class>/<n>.png``."""
    rep = Replica(tmp / "fss")
    base = rep.root / sub if sub else rep.root
    for k, name in enumerate(classes):
        for i in range(1, n + 1):
            save_jpg(base / name / f"{i}.jpg", 64, 64, seed=k * 100 + i)
            plane = fss_mask(k * 100 + i)
            save_png(base / name / f"{i}.png", plane)
            rep.labels[f"{name}/{i}"] = plane
    return rep


def _square_mask(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(2, size // 2, 2)
    plane = np.zeros((size, size), np.uint8)
    plane[y0:y0 + size // 3, x0:x0 + size // 3] = 255
    return plane


def make_deepglobe(tmp: Path, tiles: int = 4) -> Replica:
    """PATNet's Deepglobe: ``Deepglobe/<c>/test/{origin/<tile>.jpg, groundtruth/<tile>.png}``
    with RGB 0/255 masks (cv2.imwrite of a 3-channel binary map). Tile 0 of each class is
    the same satellite tile (one tile holds several classes)."""
    rep = Replica(tmp / "cd")
    for c in range(1, 7):
        for t in range(tiles):
            stem = f"{100 + t * 7}_sat_{t}{c % 6}"
            if t == 0:
                stem = "10452_sat_00"
            base = rep.root / "Deepglobe" / str(c) / "test"
            save_jpg(base / "origin" / f"{stem}.jpg", 48, 48, seed=c * 50 + t)
            plane = _square_mask(c * 50 + t, 48)
            save_png(base / "groundtruth" / f"{stem}.png", plane, mode="RGB")
            rep.labels[f"{c}/{stem}"] = plane
    return rep


def isic_ids(per_class: int = 3) -> dict[int, list[str]]:
    """Real image ids of each class in PATNet's class_id.csv (1 nevus, 2 melanoma,
    3 seborrheic_keratosis): the first ``per_class`` of each."""
    from refseg_bench.datasets.layout import read_lines

    names = ["nevus", "melanoma", "seborrheic_keratosis"]
    out: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for line in read_lines("pkg:isic2018/class_id.csv")[1:]:
        image_id, label = line.split(",")
        c = names.index(label) + 1
        if len(out[c]) < per_class:
            out[c].append(image_id)
    return out


def make_isic(tmp: Path, patnet_folders: bool) -> Replica:
    """ISIC2018 task 1 training data with real image ids: PATNet's class sub-folders, or
    the official flat input folder (classes then come from class_id.csv)."""
    rep = Replica(tmp / "isic")
    base = rep.root / "ISIC"
    for c, ids in isic_ids().items():
        for k, image_id in enumerate(ids):
            sub = str(c) if patnet_folders else ""
            save_jpg(base / "ISIC2018_Task1-2_Training_Input" / sub / f"{image_id}.jpg", 40, 56,
                     seed=c * 10 + k)
            plane = np.zeros((40, 56), np.uint8)
            plane[10:30, 10 + k:40 + k] = 255
            save_png(base / "ISIC2018_Task1_Training_GroundTruth" /
                     f"{image_id}_segmentation.png", plane)
            rep.labels[image_id] = plane
    return rep


def make_lung(tmp: Path, n: int = 5) -> Replica:
    """Kaggle chest-xray-masks-and-labels as PATNet reads it: ``CXR_png/<id>.png`` and
    ``masks/<id>_mask.png``; one radiograph without a mask, one mask named ``<id>.png``."""
    rep = Replica(tmp / "lung")
    base = rep.root / "LungSegmentation"
    for i in range(n + 1):
        stem = f"CHNCXR_{i:04d}_0"
        img = np.random.default_rng(i).integers(0, 255, (64, 64), dtype=np.uint8)
        save_png(base / "CXR_png" / f"{stem}.png", img)
        if i == n:
            continue  # no mask: not an item
        plane = _square_mask(i, 64)
        name = f"{stem}.png" if i == 0 else f"{stem}_mask.png"
        save_png(base / "masks" / name, plane)
        rep.labels[name[:-4]] = plane
    return rep


def make_perseg(tmp: Path, objects=("backpack", "cat", "dog2"), n: int = 4) -> Replica:
    """PerSeg: ``Images/<object>/<nn>.jpg`` and palette ``Annotations/<object>/<nn>.png``
    with values 0/1."""
    rep = Replica(tmp / "perseg")
    for k, obj in enumerate(objects):
        for i in range(n):
            save_jpg(rep.root / "Images" / obj / f"{i:02d}.jpg", 50, 60, seed=k * 10 + i)
            plane = (_square_mask(k * 10 + i, 50) > 0).astype(np.uint8)
            plane = np.pad(plane, ((0, 0), (0, 10)))
            save_png(rep.root / "Annotations" / obj / f"{i:02d}.png", plane, mode="P")
            rep.labels[f"{obj}/{i:02d}"] = plane
    return rep
