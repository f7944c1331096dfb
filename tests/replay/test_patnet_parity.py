"""The cross-domain replay equals PATNet's own test loaders, episode for episode.

Runs PATNet's ``data/deepglobe.py``, ``isic.py`` and ``lung.py`` (``PATNET_OFFICIAL_DIR``,
tested at 0155c5f) as its ``test.py`` does (``fix_randseed(0)``, ``nworker`` 0), 600
episodes at 1 and 5 shots, on replicas of the layouts PATNet reads; Deepglobe's tile names
sort differently as strings and as numbers, which is the order that matters. Skips without
the checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from official_checkout import copy_checkout, needs, run_driver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))
from replica_layouts import make_deepglobe, make_isic, save_png

from refseg_bench.datasets.crossdomain import ChestXray, Deepglobe, Isic2018
from refseg_bench.protocols import resolve_protocol
from refseg_bench.sampler import sample_episodes

pytestmark = [needs("PATNET_OFFICIAL_DIR"), pytest.mark.slow]
PARTS = ["data/dataset.py", "data/pascal.py", "data/fss.py", "data/deepglobe.py",
         "data/isic.py", "data/lung.py", "common/utils.py"]


def _lung(tmp: Path, n: int = 7) -> Path:
    """PATNet's Chest X-ray layout with ``<id>_mask.png`` masks only (its loader strips
    those 9 characters to find the radiograph)."""
    base = tmp / "lung" / "LungSegmentation"
    for i in range(n):
        stem = f"CHNCXR_{i:04d}_0"
        save_png(base / "CXR_png" / f"{stem}.png",
                 np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8))
        plane = np.zeros((32, 32), np.uint8)
        plane[4:20, 4 + i:20 + i] = 255
        save_png(base / "masks" / f"{stem}_mask.png", plane)
    return tmp / "lung"


def _item(loader: str, path: str) -> str:
    p = Path(path)
    return f"{p.parts[-4]}/{p.stem}" if loader == "deepglobe" else p.stem


@pytest.mark.parametrize("official, cls", [("deepglobe", Deepglobe), ("isic", Isic2018),
                                            ("lung", ChestXray)])
def test_cross_domain_loaders(official, cls, tmp_path):
    if official == "deepglobe":
        datapath = make_deepglobe(tmp_path, tiles=6).root
        root = datapath
    elif official == "isic":
        datapath = make_isic(tmp_path, patnet_folders=True).root
        root = datapath
    else:
        datapath = root = _lung(tmp_path)
    work = copy_checkout("PATNET_OFFICIAL_DIR", PARTS, tmp_path / "patnet")
    runs = run_driver("hsnet_family", work, {"benchmark": official, "datapath": str(datapath),
                                              "folds": [0], "shots": [1, 5], "n": 600})
    ds = cls(root, cache_dir=str(tmp_path / "cache"))
    protocol = resolve_protocol("patnet-cdfss", ds.name, {"exact": True})
    if official == "deepglobe":  # the order is the strings', not the numbers'
        tiles = [i.split("/")[1] for i in ds.items(0, "test", 1)]
        assert sorted(tiles) != sorted(tiles, key=lambda t: int(t.split("_")[0]))
    for run in runs:
        m = sample_episodes(ds, 0, "test", run["shot"], protocol.episodes, 0, protocol)
        theirs = [[c + 1, _item(official, q), [_item(official, s) for s in sup]]
                  for c, q, sup in run["episodes"]]
        assert len(theirs) == 600
        assert [[e.class_id, e.query, list(e.supports)] for e in m.episodes] == theirs
