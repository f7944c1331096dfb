"""The HSNet-family replay equals the official loaders' output, episode for episode.

Runs hsnet's own ``FSSDataset`` loaders (``HSNET_OFFICIAL_DIR``, tested at 6b1bc12) on
replicas that hold every file of the shipped lists, seeded as ``test.py`` seeds them, and
compares the (class, query, supports) of each episode with ``sample_episodes(...,
exact=True)`` (PASCAL-5i, FSS-1000) or the COCO replay (on the shipped per-class orders,
against hsnet reading its own pkl files). Skips without the checkout.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from official_checkout import copy_checkout, needs, run_driver
from replicas import coco_for_hsnet_lists, fss_for_hsnet_lists, voc_for_hsnet_lists

from refseg_bench.datasets.fss import Fss1000
from refseg_bench.datasets.pascal import Pascal5i
from refseg_bench.protocols import resolve_protocol
from refseg_bench.replay import hsnet
from refseg_bench.sampler import sample_episodes

pytestmark = [needs("HSNET_OFFICIAL_DIR"), pytest.mark.slow]
EXACT = {"exact": True}


def _official(tmp_path: Path, benchmark: str, datapath: Path, folds, shots, n, parts):
    work = copy_checkout("HSNET_OFFICIAL_DIR", ["data/dataset.py",
                                                 "data/pascal.py", "data/coco.py",
                                                 "data/fss.py", "common", *parts],
                         tmp_path / "hsnet")
    return run_driver("hsnet_family", work, {"benchmark": benchmark, "datapath": str(datapath),
                                              "folds": folds, "shots": shots, "n": n})


def _ours(manifest) -> list:
    return [[e.class_id, e.query, list(e.supports)] for e in manifest.episodes]


def test_pascal_4_folds_1_and_5_shot_1000_episodes(tmp_path):
    root = voc_for_hsnet_lists(tmp_path / "voc")
    runs = _official(tmp_path, "pascal", root, [0, 1, 2, 3], [1, 5], 1000,
                     ["data/splits/pascal"])
    ds = Pascal5i(root, lists="hsnet", cache_dir=str(tmp_path / "cache"))
    protocol = resolve_protocol("hsnet", "pascal5i", EXACT)
    compared = 0
    for run in runs:
        m = sample_episodes(ds, run["fold"], "val", run["shot"], 1000, 0, protocol)
        assert m.header["replay"]["lists"] == "official"
        official = [[c + 1, q, s] for c, q, s in run["episodes"]]  # hsnet ids are 0-based
        assert len(official) == 1000
        assert _ours(m) == official, f"fold {run['fold']} shot {run['shot']}"
        compared += len(official)
    assert compared == 8000


def test_coco_all_folds_against_hsnets_own_pkl(tmp_path):
    root = coco_for_hsnet_lists(tmp_path / "coco", range(4))
    runs = _official(tmp_path, "coco", root, [0, 1, 2, 3], [1, 5], 1000,
                     ["data/splits/coco/val"])
    stub = SimpleNamespace(name="coco20i", options={"class_split": "interleaved"})
    for run in runs:
        ours = hsnet.replay(stub, run["fold"], "val", run["shot"], 1000, 0, {"code": "hsnet"})
        official = [[c + 1, q[:-4], [s[:-4] for s in sup]] for c, q, sup in run["episodes"]]
        assert [[c, q, list(s)] for c, q, s in ours.episodes] == official


def test_fss1000_test_split_every_image(tmp_path):
    root = fss_for_hsnet_lists(tmp_path / "fss")
    runs = _official(tmp_path, "fss", root, [0], [1, 5], 2400, ["data/splits/fss"])
    ds = Fss1000(root, cache_dir=str(tmp_path / "cache"))
    protocol = resolve_protocol("hsnet", "fss1000", EXACT)
    for run in runs:
        m = sample_episodes(ds, 0, "test", run["shot"], protocol.episodes, 0, protocol)
        official = [[c + 1, _fss_item(q), [_fss_item(s) for s in sup]]
                    for c, q, sup in run["episodes"]]
        assert len(official) == 2400
        assert _ours(m) == official


def _fss_item(path: str) -> str:
    parts = Path(path).parts
    return f"{parts[-2]}/{Path(parts[-1]).stem}"
