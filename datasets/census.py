"""Per-image class areas of label PNGs (the input of the 2048-pixel rule), cached on disk.

A census maps ``item -> {class id: pixel count}`` over the classes present (0 and 255
excluded). It is computed once per label folder by ``data prepare`` (a few minutes for
VOC's 12k SegmentationClassAug PNGs or COCO's 123k rendered PNGs) and cached as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from refseg_bench.datasets.lists import LISTS_VERSION, read_json_cache, write_json_atomic
from refseg_bench.imageio import read_label

Areas = dict[str, dict[int, int]]


def label_areas(path: Path, ignore: int = 255) -> dict[int, int]:
    """``{class: pixels}`` of one label PNG whose pixel values are class ids."""
    counts = np.bincount(read_label(path).ravel(), minlength=256)
    return {int(c): int(counts[c]) for c in np.flatnonzero(counts) if c not in (0, ignore)}


def scan_areas(paths: Mapping[str, Path], workers: int = 2,
               log: Callable[[str], None] = lambda s: None) -> Areas:
    """Areas of every label in ``paths`` (item -> label file). PNG decoding releases the
    GIL, so threads give a real speed-up without copying arrays between processes."""
    items = list(paths)
    out: Areas = {}
    step = max(1, len(items) // 10)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(label_areas, (paths[k] for k in items))
        for i, (item, areas) in enumerate(zip(items, results, strict=True)):
            out[item] = areas
            if (i + 1) % step == 0:
                log(f"  labels scanned: {i + 1}/{len(items)}")
    return out


def cached_areas(cache_file: Path, paths: Mapping[str, Path], signature,
                 workers: int = 2, log: Callable[[str], None] = lambda s: None,
                 force: bool = False) -> Areas:
    """``scan_areas`` with a JSON cache keyed by ``signature`` (rescanned when it changes)."""
    if not force:
        data = read_json_cache(cache_file, signature)
        if data is not None and set(data["areas"]) >= set(paths):
            return {k: {int(c): n for c, n in v.items()} for k, v in data["areas"].items()}
    log(f"scanning {len(paths)} label files for class areas (cached in {cache_file})")
    areas = scan_areas(paths, workers, log)
    try:
        write_json_atomic(cache_file, {"version": LISTS_VERSION, "signature": signature,
                                       "areas": areas})
    except OSError as err:  # a read-only cache folder costs time, not correctness
        log(f"  could not write {cache_file}: {err.strerror}")
    return areas
