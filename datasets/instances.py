"""COCO-style instance annotations to per-(image, class) union masks, built by streaming.

``build_store`` reads an ``instances_*.json`` / ``lvis_v1_*.json`` element by element
(``jsonstream``) into a scratch SQLite table, then walks it in (image, category) order,
so only the annotations of one image are ever decoded at once. Each (image, category)
gets the union of its instances, crowd regions included (PANet's ``annToMask`` union,
PROTOCOLS.md §4.5), as a compressed COCO RLE with its pixel area, plus the part shared
with other categories' instances (rendered label PNGs give such pixels one class; here
they can be marked ignore, so a novel object never counts as a base-class pixel).
The areas drive the 2048-pixel rule; the RLEs are decoded one at a time by ``mask``.
Memory is bounded by the largest image's annotations, not by the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.jsonstream import iter_members
from refseg_bench.datasets.lists import LISTS_VERSION, file_signature

BATCH = 5000
IGNORE = 255
Log = Callable[[str], None]


@dataclass(frozen=True)
class StoreSummary:
    images: int
    annotations: int
    masks: int  # (image, category) unions


def _rles(segm, h: int, w: int, where: str) -> list[dict]:
    """pycocotools RLEs of one annotation's segmentation (polygons, RLE or compressed RLE)."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):
        polys = [p for p in segm if isinstance(p, list) and len(p) >= 6]  # >= 3 points
        return mask_utils.frPyObjects(polys, h, w) if polys else []
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [h, w]:
            raise DatasetError(f"{where}: RLE size {segm['size']} differs from the image's "
                               f"[height, width] [{h}, {w}]")
        if isinstance(segm["counts"], list):  # uncompressed RLE (iscrowd=1 in COCO)
            return [mask_utils.frPyObjects(segm, h, w)]
        if isinstance(segm["counts"], str):
            return [{"size": [h, w], "counts": segm["counts"].encode()}]
    raise DatasetError(f"{where}: segmentation is neither polygons nor RLE: {str(segm)[:80]}")


def _image_row(img: dict, item_of: Callable[[dict], str], src: Path) -> tuple:
    try:
        return int(img["id"]), item_of(img), int(img["height"]), int(img["width"])
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{src}: image entry {str(img)[:120]} lacks a valid {err} field "
                           "(COCO schema: id, height, width, file_name or coco_url)") from err


def _ann_row(ann: dict, src: Path) -> tuple:
    try:
        return (int(ann["image_id"]), int(ann["category_id"]),
                json.dumps(ann["segmentation"], separators=(",", ":")))
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{src}: annotation {ann.get('id', '?')} lacks a valid {err} field "
                           "(COCO schema: image_id, category_id, segmentation)") from err


def _load_raw(db: sqlite3.Connection, src: Path, item_of, log: Log) -> tuple[list, int, int]:
    """Pass 1: stream images and annotations into tables; return categories and counts."""
    categories, batch, n_img, n_ann = None, {"images": [], "annotations": []}, 0, 0
    sql = {"images": "INSERT INTO images VALUES (?,?,?,?)",
           "annotations": "INSERT INTO scratch.raw VALUES (?,?,?)"}
    for key, value in iter_members(src, stream=("images", "annotations")):
        if key == "images":
            batch[key].append(_image_row(value, item_of, src))
            n_img += 1
        elif key == "annotations":
            batch[key].append(_ann_row(value, src))
            n_ann += 1
            if n_ann % 200_000 == 0:
                log(f"  {src.name}: {n_ann} annotations read")
        elif key == "categories":
            categories = value
        if len(batch.get(key, ())) >= BATCH:
            db.executemany(sql[key], batch[key])
            batch[key].clear()
    for key, rows in batch.items():
        db.executemany(sql[key], rows)
    if not isinstance(categories, list) or not categories:
        raise DatasetError(f"{src} has no 'categories' list; it is not a COCO/LVIS "
                           "instances file")
    return categories, n_img, n_ann


def _by_image(db: sqlite3.Connection, src: Path) -> Iterator[tuple[str, int, int, dict]]:
    """(item, h, w, {category: [segmentation JSON]}) per image, in image-id order."""
    rows = db.execute(
        "SELECT r.image_id, r.cat, r.segm, i.item, i.h, i.w FROM scratch.raw r "
        "LEFT JOIN images i ON i.id = r.image_id ORDER BY r.image_id, r.cat")
    current, group, info = None, {}, None
    for image_id, cat, segm, item, h, w in rows:
        if item is None:
            raise DatasetError(f"{src}: an annotation refers to image_id {image_id}, which is "
                               "not in 'images'; the file is inconsistent")
        if image_id != current:
            if group:
                yield (*info, group)
            current, group, info = image_id, {}, (item, h, w)
        group.setdefault(cat, []).append(segm)
    if group:
        yield (*info, group)


def _image_rows(item: str, h: int, w: int, segms: dict, src: Path) -> list[tuple]:
    """Mask rows of one image: per category the union of its instances, its area, the part
    shared with other categories' instances, and the area outside that shared part."""
    from pycocotools import mask as mask_utils

    unions = {}
    for cat, group in segms.items():
        where = f"{src} image {item} category {cat}"
        rles = [r for s in group for r in _rles(json.loads(s), h, w, where)]
        if rles:
            unions[cat] = mask_utils.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
    cats = list(unions)
    areas = [int(a) for a in mask_utils.area([unions[c] for c in cats])] if cats else []
    others = _others(mask_utils, [unions[c] for c in cats], areas)
    rows = []
    for k, cat in enumerate(cats):
        overlap, shared = None, 0
        if others[k] is not None:
            both = mask_utils.merge([unions[cat], others[k]], intersect=True)
            shared = int(mask_utils.area(both))
            overlap = both["counts"] if shared else None
        rows.append((item, cat, h, w, areas[k], areas[k] - shared, unions[cat]["counts"],
                     overlap))
    return rows


def _others(mask_utils, unions: list[dict], areas: list[int]) -> list[dict | None]:
    """For each union, the union of all the others (None where nothing can overlap), with
    prefix and suffix unions: O(K) merges for K classes instead of O(K^2)."""
    k = len(unions)
    if k < 2 or int(mask_utils.area(mask_utils.merge(unions, intersect=False))) == sum(areas):
        return [None] * k  # the classes' areas add up: no pixel is shared
    prefix, suffix = [None] * k, [None] * k
    for i in range(1, k):
        prefix[i] = unions[0] if i == 1 else mask_utils.merge([prefix[i - 1], unions[i - 1]])
        j = k - 1 - i
        suffix[j] = unions[k - 1] if i == 1 else mask_utils.merge([suffix[j + 1], unions[j + 1]])
    out = []
    for i in range(k):
        parts = [p for p in (prefix[i], suffix[i]) if p is not None]
        out.append(parts[0] if len(parts) == 1 else mask_utils.merge(parts, intersect=False))
    return out


def build_store(src: Path, dest: Path, item_of: Callable[[dict], str],
                log: Log = lambda s: None) -> StoreSummary:
    """Build the SQLite mask store ``dest`` from the instances JSON ``src`` (see module doc)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, scratch = dest.with_suffix(".building"), dest.with_suffix(".scratch")
    for p in (tmp, scratch):
        p.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    insert = "INSERT INTO masks VALUES (?,?,?,?,?,?,?,?)"
    try:
        db.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE images (id INTEGER PRIMARY KEY, item TEXT, h INT, w INT);"
            "CREATE TABLE masks (item TEXT, cat INT, h INT, w INT, area INT, clear_area INT,"
            " counts BLOB, overlap BLOB, PRIMARY KEY (item, cat)) WITHOUT ROWID;"
            "CREATE TABLE scratch.raw (image_id INT, cat INT, segm TEXT);")
        categories, n_img, n_ann = _load_raw(db, src, item_of, log)
        db.execute("CREATE INDEX scratch.raw_by_image ON raw (image_id, cat)")
        db.execute("CREATE INDEX images_by_item ON images (item)")
        out, n_masks = [], 0
        for item, h, w, segms in _by_image(db, src):
            out.extend(_image_rows(item, h, w, segms, src))
            if len(out) >= BATCH:
                n_masks += len(out)
                db.executemany(insert, out)
                out.clear()
        n_masks += len(out)
        db.executemany(insert, out)
        meta = {"version": LISTS_VERSION, "signature": file_signature([src]),
                "categories": [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]}
        db.executemany("INSERT INTO meta VALUES (?,?)",
                       [(k, json.dumps(v)) for k, v in meta.items()])
        db.commit()
        db.execute("DETACH DATABASE scratch")
    finally:
        db.close()
        scratch.unlink(missing_ok=True)
    tmp.replace(dest)
    log(f"  {src.name}: {n_img} images, {n_ann} annotations -> {n_masks} class masks")
    return StoreSummary(n_img, n_ann, n_masks)


def open_store(src: Path, dest: Path, item_of: Callable[[dict], str], force: bool,
               log: Log = lambda s: None) -> tuple[InstanceStore, bool]:
    """The store ``dest`` for ``src``, (re)built when missing, stale or ``force``d.
    Returns it and whether it was built now (callers check a fresh build's contents)."""
    store = InstanceStore(dest)
    if not force and store.is_current(src):
        return store, False
    store.close()
    log(f"building instance masks from {src} (streamed; cached in {store.path})")
    build_store(src, store.path, item_of, log)
    return store, True


def _decode(h: int, w: int, counts: bytes) -> np.ndarray:
    """``(H, W)`` uint8 plane of a compressed RLE."""
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        # pycocotools' Cython decode trips NumPy 2's __array__(copy=) deprecation; harmless.
        warnings.filterwarnings("ignore", message="__array__ implementation",
                                category=DeprecationWarning)
        plane = mask_utils.decode({"size": [h, w], "counts": counts})
    return np.ascontiguousarray(plane)


class InstanceStore:
    """Read side of a store built by ``build_store``; safe to use from forked workers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def __getstate__(self) -> dict:  # connections do not cross processes
        return {"path": self.path, "_conn": None, "_pid": -1}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise DatasetError(f"mask store {self.path} is missing; run "
                                   "`refseg-bench data prepare <dataset>` to build it")
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._pid = os.getpid()
        return self._conn

    def is_current(self, src: Path) -> bool:
        try:
            meta = self.meta()
        except (sqlite3.DatabaseError, DatasetError):
            return False
        return (meta.get("version") == LISTS_VERSION
                and meta.get("signature") == file_signature([src]))

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._db().execute("SELECT key, value FROM meta")}

    def areas(self, overlap: str = "union") -> Iterator[tuple[str, int, int]]:
        """(item, category id, pixels) for every (image, category) with instances: the
        union's area, or with ``overlap="ignore"`` the area not shared with another class."""
        col = "clear_area" if overlap == "ignore" else "area"
        yield from self._db().execute(f"SELECT item, cat, {col} FROM masks ORDER BY item, cat")

    def mask(self, item: str, cat: int, overlap: str = "union") -> np.ndarray | None:
        """``(H, W)`` uint8 mask of ``cat`` in ``item`` (None if it has no instance there):
        1 on the union of its instances; with ``overlap="ignore"``, 255 where an instance of
        another category covers the same pixel (such a pixel has no single class)."""
        row = self._db().execute("SELECT h, w, counts, overlap FROM masks WHERE item=? AND "
                                 "cat=?", (item, int(cat))).fetchone()
        if row is None:
            return None
        h, w, counts, shared = row
        out = _decode(h, w, counts)
        if overlap == "ignore" and shared is not None:
            out[_decode(h, w, shared).astype(bool)] = IGNORE
        return out

    def image_size(self, item: str) -> tuple[int, int] | None:
        """``(H, W)`` recorded for ``item`` in the annotation file."""
        row = self._db().execute("SELECT h, w FROM images WHERE item=?", (item,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
