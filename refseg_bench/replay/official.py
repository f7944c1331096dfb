"""Official list facts the replays need, read from the lists shipped in ``datasets/lists/``.

- ``coco20i/hsnet_val_fold{f}.txt.gz``: the per-class image order of HSNet's
  ``data/splits/coco/val/fold{f}.pkl`` (byte-identical to Matcher's
  ``datasets/COCO2014/splits/val/fold{f}.pkl``), one line per class of the fold:
  ``<class id 1-80> <COCO val2014 image number> ...``. HSNet's COCO loader draws the query and
  the supports by position in these lists, so their order is part of the episodes.
- ``{pascal5i,coco20i}/bam_val_digests.json``: sha256 of the BAM-format val lists
  (``fss_list/val/data_list_{f}.txt`` and ``sub_class_file_list_{f}.txt``, as shipped by FSSAM
  and VRP-SAM), in the form of ``lists_digest``. A replay on the PFENet/BAM lists compares
  the dataset's lists against them to say whether its episodes are the official ones.
"""

from __future__ import annotations

import functools
import hashlib
import json

from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.layout import packaged_list_path, read_lines


@functools.cache
def hsnet_coco_orders(fold: int) -> dict[int, tuple[str, ...]]:
    """Class id (1-80) -> val2014 items (``val2014/COCO_val2014_<12 digits>``) in the order
    of HSNet's val pkl for ``fold``; only the fold's 20 classes."""
    out: dict[int, tuple[str, ...]] = {}
    for line in read_lines(f"pkg:coco20i/hsnet_val_fold{fold}.txt.gz"):
        cid, *numbers = line.split()
        out[int(cid)] = tuple(f"val2014/COCO_val2014_{int(n):012d}" for n in numbers)
    return out


def lists_digest(queries: list[str], pools: dict[int, list[str]]) -> str:
    """sha256 of a file-order list set: the query list in order and each class's image list
    in order (item ids as the datasets name them)."""
    body = {"queries": list(queries), "pools": {str(c): list(pools[c]) for c in sorted(pools)}}
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


@functools.cache
def bam_val_digests(dataset: str) -> dict:
    """``{fold: {"sha256", "source"}}`` of the BAM-format val lists of ``dataset`` (empty
    for datasets without such lists)."""
    node = packaged_list_path(f"{dataset}/bam_val_digests.json")
    if not node.is_file():
        return {}
    try:
        return json.loads(node.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"packaged list {dataset}/bam_val_digests.json is corrupt ({err}); "
                           "reinstall refseg-bench") from err


def compare_bam_lists(dataset: str, fold: int, queries: list[str],
                      pools: dict[int, list[str]]) -> tuple[str, str]:
    """``("official" | "differ" | "unverified", why)`` for the dataset's val lists of
    ``fold`` against the shipped digest of the BAM-format lists."""
    known = bam_val_digests(dataset).get(str(fold))
    if known is None:
        return "unverified", f"no official copy of the {dataset} fold {fold} val lists"
    if lists_digest(queries, pools) == known["sha256"]:
        return "official", f"equal to {known['source']}"
    return "differ", (f"the dataset's lists differ from {known['source']} (other labels, "
                      "another list option, or a partial copy): the official draw sequence "
                      "is replayed on these lists")
