"""The ``rendered`` view of an image's instances, computed on COCO RLEs.

The official COCO-20i label PNGs paint every non-crowd instance, in the annotation file's
order, over what was painted before (docs/protocols.md §4.4). ``label_views`` gives each
category's pixels in that label map without decoding a plane: pycocotools offers union,
intersection and area on run-length encodings, and a complement is a shift of the runs.
"""

from __future__ import annotations

import numpy as np


def merge_all(mask_utils, rles: list[dict]) -> dict:
    """Union of ``rles`` (one RLE is returned as is)."""
    return rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)


def label_views(mask_utils, h: int, w: int, instances: list, unions: dict) -> dict:
    """``{category: (area, counts or None)}``: the category's pixels in the label map that
    paints the non-crowd instances in order, a later one over an earlier one. ``counts`` is
    None where the view equals the category's union (no crowd, nothing painted over)."""
    painted = [(c, r) for c, r, crowd in instances if not crowd]
    cats = list(dict.fromkeys(c for c, _ in painted))
    solid = {c: merge_all(mask_utils, [r for k, r in painted if k == c]) for c in cats}
    areas = {c: int(mask_utils.area(solid[c])) for c in cats}
    out = {c: (0, None) for c in unions}  # a category with only crowd regions: no pixel
    if len(cats) > 1 and int(mask_utils.area(merge_all(mask_utils, list(solid.values())))) \
            < sum(areas.values()):
        return out | _paint(mask_utils, h, w, painted, cats, unions)
    for c in cats:  # no two categories share a pixel: each keeps its non-crowd union
        same = solid[c]["counts"] == unions[c]["counts"]
        out[c] = (areas[c], None if same else solid[c]["counts"])
    return out


def _paint(mask_utils, h: int, w: int, painted: list, cats: list, unions: dict) -> dict:
    """The official rendering done on RLEs (no plane is decoded): walking the instances
    from the last drawn to the first, each keeps the pixels no later instance covers, and
    a category's region is the union of what its instances keep."""
    kept: dict[int, list[dict]] = {c: [] for c in cats}
    covered = None
    for cat, rle in reversed(painted):
        hidden = 0 if covered is None else int(mask_utils.area(
            mask_utils.merge([rle, covered], intersect=True)))
        kept[cat].append(rle if not hidden else _difference(mask_utils, rle, covered, h, w))
        covered = rle if covered is None else mask_utils.merge([covered, rle])
    out = {}
    for cat, parts in kept.items():
        region = merge_all(mask_utils, parts)
        same = region["counts"] == unions[cat]["counts"]
        out[cat] = (int(mask_utils.area(region)), None if same else region["counts"])
    return out


def _difference(mask_utils, a: dict, b: dict, h: int, w: int) -> dict:
    """RLE of ``a`` and not ``b``: pycocotools merges by union or intersection only, so
    ``b`` is complemented by shifting its runs by one (a leading zero run added or
    dropped) and intersected with ``a``."""
    runs = _rle_counts(b["counts"])
    flipped = runs[1:] if runs.size and runs[0] == 0 else np.concatenate([[0], runs])
    inverse = mask_utils.frPyObjects({"size": [h, w], "counts": flipped.tolist()}, h, w)
    return mask_utils.merge([a, inverse], intersect=True)


def _rle_counts(counts: bytes) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``: 5-bit
    chunks plus a continuation bit, offset by 48; run m > 2 stored as the difference to
    run m - 2), decoded with array operations."""
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    last = (c & 0x20) == 0  # the last chunk of a run has no continuation bit
    run = np.concatenate([[0], np.cumsum(last)[:-1]])
    k = np.arange(c.size) - np.flatnonzero(np.concatenate([[True], last[:-1]]))[run]
    x = np.zeros(int(last.sum()), np.int64)
    np.add.at(x, run, (c & 0x1F) << (5 * k))
    negative = last & ((c & 0x10) != 0)  # sign bit set in a run's last chunk
    x[run[negative]] -= 1 << (5 * (k[negative] + 1))
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x
