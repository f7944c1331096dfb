"""The VRP-SAM replay equals the official validation loaders' output, episode for episode.

Runs VRP-SAM's ``data/pascal.py`` and ``data/coco.py`` (``VRPSAM_OFFICIAL_DIR``, tested at
9c53a6a) as ``train.py`` validates: 4 ranks, each seeded by ``utils.fix_randseed(321)``,
each reading its share through ``DistributedSampler(shuffle=False)`` and a DataLoader with
``nworker`` 0 and batch 2 (the ranks share no random state, so they run one after the
other here). The BAM-format list files they read are written from the dataset's lists.
PASCAL: a VOC replica; COCO: a replica of the MSCOCO14 layout (one tiny file linked under
every name) for the interleaved fold 1. Skips without the checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from official_checkout import copy_checkout, needs, run_driver
from replicas import link, tiny_sources, voc_identified

from refseg_bench.datasets.pascal import Pascal5i
from refseg_bench.protocols import resolve_protocol
from refseg_bench.replay import vrpsam
from refseg_bench.sampler import sample_episodes

pytestmark = [needs("VRPSAM_OFFICIAL_DIR"), pytest.mark.slow]
PARTS = ["data/dataset.py", "data/pascal.py", "data/coco.py", "common/utils.py"]


def _write_lists(work: Path, benchmark: str, fold: int, queries, pools, path_of) -> None:
    folder = work / "data" / "splits" / "lists" / benchmark / "fss_list" / "val"
    folder.mkdir(parents=True)
    (folder / f"data_list_{fold}.txt").write_text(
        "".join(f"{path_of(q)[0]} {path_of(q)[1]}\n" for q in queries))
    (folder / f"sub_class_file_list_{fold}.txt").write_text(
        str({c: [path_of(i) for i in pool] for c, pool in pools.items()}))


def _by_index(run) -> dict[int, list]:
    out = {}
    for rank in run["ranks"]:
        for idx, (c, q, s) in zip(rank["indices"], rank["episodes"], strict=True):
            out[idx] = [c + 1, q, s]  # VRP-SAM class ids are 0-based
    return out


def test_pascal_four_ranks(tmp_path):
    rep = voc_identified(tmp_path / "voc")
    ds = Pascal5i(rep["root"], lists="pfenet", val_pool=rep["data_list"],
                  cache_dir=str(tmp_path / "cache"))
    queries = ds.query_items(0, "val")
    pools = {c: ds.items(0, "val", c) for c in ds.classes(0, "val")}
    work = copy_checkout("VRPSAM_OFFICIAL_DIR", PARTS, tmp_path / "vrp")
    _write_lists(work, "pascal", 0, queries, pools,
                 lambda i: (f"VOC2012/JPEGImages/{i}.jpg", f"VOC2012/SegmentationClassAug/{i}.png"))
    runs = run_driver("vrpsam", work, {"benchmark": "pascal", "datapath": str(rep["root"]),
                                       "fold": 0, "shots": [1, 5], "ranks": 4, "seed": 321})
    protocol = resolve_protocol("vrp-sam", "pascal5i", {"exact": True})
    for run in runs:
        official = _by_index(run)
        assert sorted(official) == list(range(1000))
        m = sample_episodes(ds, 0, "val", run["shot"], protocol.episodes, 321, protocol)
        assert [[e.class_id, e.query, list(e.supports)] for e in m.episodes] == \
            [official[i] for i in range(1000)]


class CocoLists:
    """The few methods of a dataset the COCO replay reads, over lists given in memory."""

    name = "coco20i"
    options = {"class_split": "interleaved"}

    def __init__(self, pools: dict[int, list[str]]):
        self.pools = pools

    def classes(self, fold, split):
        return sorted(self.pools)

    def items(self, fold, split, c):
        return list(self.pools[c])

    def query_items(self, fold, split):
        return sorted({i for v in self.pools.values() for i in v})

    def item_classes(self, fold, split, item):
        return [c for c in sorted(self.pools) if item in self.pools[c]]


def _stem(item: str) -> str:
    return item.split("/")[-1]  # VRP-SAM names COCO images by file stem


def test_coco_every_rank_draws_the_same_250(tmp_path):
    fold = 1
    classes = [fold + 1 + 4 * v for v in range(20)]
    names = [f"COCO_val2014_{100000 + k:012d}" for k in range(90)]
    pools = {c: [f"val2014/{names[(7 * j + 3 * c) % 90]}" for j in range(4 + c % 9)]
             for c in classes}
    jpg, png = tiny_sources(tmp_path / "_src")
    for stem in names:
        link(jpg, tmp_path / "MSCOCO14" / "val2014" / f"{stem}.jpg")
        link(png, tmp_path / "MSCOCO14" / "annotations" / "val2014" / f"{stem}.png")
    ds = CocoLists(pools)
    work = copy_checkout("VRPSAM_OFFICIAL_DIR", PARTS, tmp_path / "vrp")
    _write_lists(work, "coco", fold, ds.query_items(fold, "val"), pools,
                 lambda i: (f"../MSCOCO14/{i}.jpg", f"../MSCOCO14/annotations/{i}.png"))
    runs = run_driver("vrpsam", work, {"benchmark": "coco", "datapath": str(tmp_path),
                                       "fold": fold, "shots": [1, 5], "ranks": 4, "seed": 321})
    spec = resolve_protocol("vrp-sam", "coco20i", {"exact": True}).replay
    for run in runs:
        ours = vrpsam.replay(ds, fold, "val", run["shot"], spec["episodes"], 321, spec)
        assert ours.info["copies"] == 4 and ours.info["counted"] == 1000
        mine = [[c, _stem(q), [_stem(x) for x in s]] for c, q, s in ours.episodes]
        for rank in run["ranks"]:
            assert len(rank["episodes"]) == 250
            assert [[c + 1, q, s] for c, q, s in rank["episodes"]] == mine
