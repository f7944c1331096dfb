"""The PFENet-family replay equals the official loaders' output, episode for episode.

Runs the official ``util/dataset.py`` ``SemData`` of PFENet (``PFENET_OFFICIAL_DIR``, tested
at a505675), BAM (``BAM_OFFICIAL_DIR``, c0f935c) and FSSAM (``FSSAM_OFFICIAL_DIR``,
9318e28) through a real multi-worker torch DataLoader, with the worker count of their
configs and the pass loop and seeding of their ``test.py``, on a replica of the VOC layout
whose images each have their own constant colour (the loaders return pixels, not names).
BAM and FSSAM build their list files with their own ``make_dataset`` first. The
replica is small, so the loops run a few hundred episodes (several passes, each with fresh
worker seeds) instead of 1000-5001. Skips without the checkouts.
"""

from __future__ import annotations

import pytest
from official_checkout import copy_checkout, needs, run_driver
from replicas import voc_identified

from refseg_bench.datasets.pascal import Pascal5i
from refseg_bench.protocols import resolve_protocol
from refseg_bench.sampler import sample_episodes

pytestmark = pytest.mark.slow
PARTS = {"PFENET_OFFICIAL_DIR": ["util/dataset.py"],
         "BAM_OFFICIAL_DIR": ["util/dataset.py", "util/get_weak_anns.py"],
         "FSSAM_OFFICIAL_DIR": ["util/__init__.py", "util/dataset.py", "util/get_weak_anns.py"]}
# (preset, env, official stop count: test_num, episodes it evaluates, seed)
CASES = {
    "pfenet": ("PFENET_OFFICIAL_DIR", 150, 151, 321),  # PFENet runs test_num + 1
    "bam": ("BAM_OFFICIAL_DIR", 120, 120, 510),  # the first of BAM's five seeds
    "fssam": ("FSSAM_OFFICIAL_DIR", 80, 80, 321),
}


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    return voc_identified(tmp_path_factory.mktemp("voc"))


@pytest.mark.parametrize("preset", [pytest.param(p, marks=needs(CASES[p][0])) for p in CASES])
def test_official_semdata_through_worker_loader(preset, replica, tmp_path):
    env, test_num, n, seed = CASES[preset]
    protocol = resolve_protocol(preset, "pascal5i", {"exact": True})
    work = copy_checkout(env, PARTS[env], tmp_path / preset)
    config = {k: replica[k] for k in ("data_root", "data_list", "base_data_root", "colours")}
    runs = run_driver("pfenet_family", work, {
        **config, "code": preset, "fold": 0, "shots": [1, 5], "seed": seed,
        "test_num": test_num, "workers": protocol.replay["workers"]})
    ds = Pascal5i(replica["root"], lists="pfenet", val_pool=replica["data_list"],
                  cache_dir=str(tmp_path / "cache"))
    queries = ds.query_items(0, "val")
    assert n > 2 * len(queries)  # three passes or more, each with its own base seed
    assert any(len(ds.item_classes(0, "val", q)) > 1 for q in queries)
    for run in runs:
        m = sample_episodes(ds, 0, "val", run["shot"], n, seed, protocol)
        assert len(run["episodes"]) == n
        assert [[e.class_id, e.query, list(e.supports)] for e in m.episodes] == run["episodes"]
