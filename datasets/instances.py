"""COCO-style instance annotations to per-(image, class) masks, built by streaming.

``build_store`` reads an ``instances_*.json`` / ``lvis_v1_*.json`` element by element
(``jsonstream``) into a scratch SQLite table, then walks it image by image (annotations
in file order), so only the annotations of one image are ever decoded at once. Each
(image, category) gets three views of its pixels, each a compressed COCO RLE with its
area (docs/protocols.md §4.4):

- ``union``: the union of its instances, crowd regions included (PANet's ``annToMask``
  union);
- ``ignore``: the union minus the pixels shared with another category's instances;
- ``rendered`` (with ``label_maps=True``): the pixels the category holds in a label map
  with one class per pixel drawn the way the official COCO-20i label PNGs were: the
  non-crowd instances painted in file order, a later instance over an earlier one, crowd
  regions left as background. The painting is done on the RLEs, and only in images where
  two categories overlap; elsewhere the view is the non-crowd union.

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
from refseg_bench.datasets.label_maps import label_views, merge_all
from refseg_bench.datasets.lists import LISTS_VERSION, file_signature

BATCH = 5000
IGNORE = 255
# Bumped when the table layout changes, so stores written by an older version rebuild.
STORE_VERSION = 2
OVERLAP_MODES = ("union", "ignore", "rendered")
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
                json.dumps(ann["segmentation"], separators=(",", ":")),
                int(bool(ann.get("iscrowd", 0))))
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{src}: annotation {ann.get('id', '?')} lacks a valid {err} field "
                           "(COCO schema: image_id, category_id, segmentation)") from err


def _load_raw(db: sqlite3.Connection, src: Path, item_of, log: Log) -> tuple[list, int, int]:
    """Pass 1: stream images and annotations into tables; return categories and counts."""
    categories, batch, n_img, n_ann = None, {"images": [], "annotations": []}, 0, 0
    sql = {"images": "INSERT INTO images VALUES (?,?,?,?)",
           "annotations": "INSERT INTO scratch.raw VALUES (?,?,?,?)"}
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


def _by_image(db: sqlite3.Connection, src: Path) -> Iterator[tuple[str, int, int, list]]:
    """(item, h, w, [(category, segmentation JSON, crowd)]) per image, in image-id order;
    each image's annotations in file order (the scratch table's rowid), the order in which
    pycocotools' ``COCO.getAnnIds(imgIds=...)`` returns them."""
    rows = db.execute(
        "SELECT r.image_id, r.cat, r.segm, r.crowd, i.item, i.h, i.w FROM scratch.raw r "
        "LEFT JOIN images i ON i.id = r.image_id ORDER BY r.image_id, r.rowid")
    current, group, info = None, [], None
    for image_id, cat, segm, crowd, item, h, w in rows:
        if item is None:
            raise DatasetError(f"{src}: an annotation refers to image_id {image_id}, which is "
                               "not in 'images'; the file is inconsistent")
        if image_id != current:
            if group:
                yield (*info, group)
            current, group, info = image_id, [], (item, h, w)
        group.append((cat, segm, crowd))
    if group:
        yield (*info, group)


def _instance_rles(item: str, h: int, w: int, anns: list, src: Path) -> list[tuple]:
    """``[(category, RLE, crowd)]`` in file order, one RLE per annotation (its polygons
    merged); annotations without a pixel (degenerate polygons) are dropped."""
    from pycocotools import mask as mask_utils

    out = []
    for cat, segm, crowd in anns:
        rles = _rles(json.loads(segm), h, w, f"{src} image {item} category {cat}")
        if rles:
            out.append((cat, mask_utils.merge(rles) if len(rles) > 1 else rles[0], crowd))
    return out


def _image_rows(item: str, h: int, w: int, anns: list, src: Path,
                label_maps: bool) -> list[tuple]:
    """Mask rows of one image: per category the union of its instances and its area, the
    part shared with other categories' instances, the area outside that shared part, and
    (``label_maps``) its pixels in the rendered label map (module docstring)."""
    from pycocotools import mask as mask_utils

    instances = _instance_rles(item, h, w, anns, src)
    cats = list(dict.fromkeys(c for c, _, _ in instances))
    unions = {c: merge_all(mask_utils, [r for k, r, _ in instances if k == c]) for c in cats}
    areas = [int(a) for a in mask_utils.area([unions[c] for c in cats])] if cats else []
    others = _others(mask_utils, [unions[c] for c in cats], areas)
    labels = label_views(mask_utils, h, w, instances, unions) if label_maps else {}
    rows = []
    for k, cat in enumerate(cats):
        overlap, shared = None, 0
        if others[k] is not None:
            both = mask_utils.merge([unions[cat], others[k]], intersect=True)
            shared = int(mask_utils.area(both))
            overlap = both["counts"] if shared else None
        label_area, label = labels.get(cat, (None, None))
        rows.append((item, cat, h, w, areas[k], areas[k] - shared, unions[cat]["counts"],
                     overlap, label_area, label))
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
                log: Log = lambda s: None, label_maps: bool = False) -> StoreSummary:
    """Build the SQLite mask store ``dest`` from the instances JSON ``src`` (see module doc).
    ``label_maps`` also stores the ``rendered`` view (COCO-20i's default; LVIS needs none)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, scratch = dest.with_suffix(".building"), dest.with_suffix(".scratch")
    for p in (tmp, scratch):
        p.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    insert = "INSERT INTO masks VALUES (?,?,?,?,?,?,?,?,?,?)"
    try:
        db.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE images (id INTEGER PRIMARY KEY, item TEXT, h INT, w INT);"
            "CREATE TABLE masks (item TEXT, cat INT, h INT, w INT, area INT, clear_area INT,"
            " counts BLOB, overlap BLOB, label_area INT, label BLOB,"
            " PRIMARY KEY (item, cat)) WITHOUT ROWID;"
            "CREATE TABLE scratch.raw (image_id INT, cat INT, segm TEXT, crowd INT);")
        categories, n_img, n_ann = _load_raw(db, src, item_of, log)
        db.execute("CREATE INDEX scratch.raw_by_image ON raw (image_id)")  # + rowid
        db.execute("CREATE INDEX images_by_item ON images (item)")
        out, n_masks = [], 0
        for item, h, w, anns in _by_image(db, src):
            out.extend(_image_rows(item, h, w, anns, src, label_maps))
            if len(out) >= BATCH:
                n_masks += len(out)
                db.executemany(insert, out)
                out.clear()
        n_masks += len(out)
        db.executemany(insert, out)
        meta = {"version": LISTS_VERSION, "store_version": STORE_VERSION,
                "label_maps": bool(label_maps), "signature": file_signature([src]),
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
               log: Log = lambda s: None, label_maps: bool = False
               ) -> tuple[InstanceStore, bool]:
    """The store ``dest`` for ``src``, (re)built when missing, stale, ``force``d, or without
    the ``label_maps`` view asked for. Returns it and whether it was built now (callers
    check a fresh build's contents)."""
    store = InstanceStore(dest)
    if not force and store.is_current(src, label_maps):
        return store, False
    store.close()
    log(f"building instance masks from {src} (streamed; cached in {store.path})")
    build_store(src, store.path, item_of, log, label_maps)
    return store, True


def _check_overlap(overlap: str) -> str:
    if overlap not in OVERLAP_MODES:
        raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {overlap!r}")
    return overlap


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
        self._label_maps: bool | None = None

    def __getstate__(self) -> dict:  # connections do not cross processes
        return {"path": self.path, "_conn": None, "_pid": -1, "_label_maps": None}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise DatasetError(f"mask store {self.path} is missing; run "
                                   "`refseg-bench data prepare <dataset>` to build it")
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._pid = os.getpid()
        return self._conn

    def is_current(self, src: Path, label_maps: bool = False) -> bool:
        try:
            meta = self.meta()
        except (sqlite3.DatabaseError, DatasetError):
            return False
        return (meta.get("version") == LISTS_VERSION
                and meta.get("store_version") == STORE_VERSION
                and (meta.get("label_maps") or not label_maps)
                and meta.get("signature") == file_signature([src]))

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._db().execute("SELECT key, value FROM meta")}

    def areas(self, overlap: str = "union") -> Iterator[tuple[str, int, int]]:
        """(item, category id, pixels) for every (image, category) with instances: the
        union's area; with ``overlap="ignore"`` the area not shared with another class;
        with ``overlap="rendered"`` its area in the rendered label map (0 if none)."""
        col = {"union": "area", "ignore": "clear_area", "rendered": "label_area"}[
            _check_overlap(overlap)]
        if overlap == "rendered":
            self._require_label_maps()
        yield from self._db().execute(f"SELECT item, cat, {col} FROM masks ORDER BY item, cat")

    def mask(self, item: str, cat: int, overlap: str = "union") -> np.ndarray | None:
        """``(H, W)`` uint8 mask of ``cat`` in ``item`` (None if it has no instance there).

        ``union``: 1 on the union of its instances. ``ignore``: also 255 where an instance
        of another category covers the same pixel (such a pixel has no single class).
        ``rendered``: 1 where the rendered label map holds ``cat`` (possibly nowhere)."""
        if _check_overlap(overlap) == "rendered":
            self._require_label_maps()
        row = self._db().execute("SELECT h, w, counts, overlap, label_area, label FROM masks "
                                 "WHERE item=? AND cat=?", (item, int(cat))).fetchone()
        if row is None:
            return None
        h, w, counts, shared, label_area, label = row
        if overlap == "rendered":
            if not label_area:
                return np.zeros((h, w), np.uint8)
            return _decode(h, w, counts if label is None else label)
        out = _decode(h, w, counts)
        if overlap == "ignore" and shared is not None:
            out[_decode(h, w, shared).astype(bool)] = IGNORE
        return out

    def _require_label_maps(self) -> None:
        if self._label_maps is None:
            self._label_maps = bool(self.meta().get("label_maps"))
        if not self._label_maps:
            raise DatasetError(f"mask store {self.path} was built without rendered label "
                               "maps; rebuild it with `refseg-bench data prepare --force`")

    def image_size(self, item: str) -> tuple[int, int] | None:
        """``(H, W)`` recorded for ``item`` in the annotation file."""
        row = self._db().execute("SELECT h, w FROM images WHERE item=?", (item,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def close(self) -> None:
        self._label_maps = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
