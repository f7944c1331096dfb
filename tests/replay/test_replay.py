"""Exact replays, checked without the official checkouts (the parity tests beside this file
run the official loaders themselves).

Known answers: episodes printed by hsnet's own loaders (6b1bc12) seeded as its test.py
seeds them, on the shipped lists. Golden hashes: the full 1000-episode replays, which the
parity tests found equal to the official output; a change means the replay changed.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from replicas import voc_for_hsnet_lists

from refseg_bench.datasets.pascal import Pascal5i
from refseg_bench.protocols import resolve_protocol
from refseg_bench.replay import ReplayError, combined_kind, episode_kind, hsnet, pfenet
from refseg_bench.replay.official import bam_val_digests, hsnet_coco_orders
from refseg_bench.sampler import sample_episodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import ListDataset  # noqa: E402

EXACT = {"exact": True}
# hsnet DatasetPASCAL, np.random.seed(0): (fold, shot) -> episodes 0 and 999 (our class ids)
PASCAL_KNOWN = {
    (0, 1): [(1, "2007_000033", ("2010_001174",)), (3, "2011_000185", ("2007_007084",))],
    (1, 5): [(9, "2007_000452", ("2008_000107", "2007_008106", "2010_001699", "2011_000813",
                                 "2010_004825")),
             (10, "2007_009897", ("2009_002122", "2007_001299", "2007_000491", "2009_000771",
                                  "2007_009245"))],
    (3, 1): [(19, "2007_000042", ("2008_005544",)), (19, "2011_000283", ("2011_000291",))],
}
# hsnet DatasetCOCO on its own val pkl, 1-shot: fold -> the first two episodes
COCO_KNOWN = {
    0: [(73, 507081, (486122,)), (45, 504005, (570465,))],
    3: [(76, 295564, (262631,)), (4, 457848, (338044,))],
}
GOLDEN = {
    "pascal": "c4e7782c29697cf31a4ee24054cea3493cc016ec14cd709a6b1b710c082fa82e",
    "coco": "6f8877d60be1deae134e6d9eae46eecd996d6a6bdb42e41fb7f270849aa2bf58",
    # a PFENet replay on the in-memory fake lists (no official counterpart)
    "pfenet_fake": "d90a620552e6c26f78792fc76ecb402c0dc7ed414ee30c80a5717dc1dd4b3390",
}


def _digest(episodes) -> str:
    rows = [[c, q, list(s)] for c, q, s in episodes]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def shipped_pascal(tmp_path_factory):
    root = voc_for_hsnet_lists(tmp_path_factory.mktemp("voc"))
    return Pascal5i(root, lists="hsnet", cache_dir=str(root / "cache"))


def test_pascal_known_answers_and_golden(shipped_pascal):
    protocol = resolve_protocol("hsnet", "pascal5i", EXACT)
    all_runs = []
    for fold in range(4):
        for shot in (1, 5):
            m = sample_episodes(shipped_pascal, fold, "val", shot, 1000, 0, protocol)
            got = [(e.class_id, e.query, e.supports) for e in m.episodes]
            if (fold, shot) in PASCAL_KNOWN:
                assert [got[0], got[999]] == PASCAL_KNOWN[(fold, shot)]
            assert m.header["replay"]["lists"] == "official"
            assert m.header["sampler"] == "official replay (hsnet)"
            all_runs += got
    assert _digest(all_runs) == GOLDEN["pascal"]


def test_coco_known_answers_and_golden():
    stub = SimpleNamespace(name="coco20i", options={"class_split": "interleaved"})
    spec = resolve_protocol("hsnet", "coco20i", EXACT).replay
    all_runs = []
    for fold in range(4):
        for shot in (1, 5):
            got = hsnet.replay(stub, fold, "val", shot, 1000, 0, spec).episodes
            if shot == 1 and fold in COCO_KNOWN:
                want = [(c, f"val2014/COCO_val2014_{q:012d}",
                         tuple(f"val2014/COCO_val2014_{s:012d}" for s in sup))
                        for c, q, sup in COCO_KNOWN[fold]]
                assert got[:2] == want
            all_runs += got
    assert _digest(all_runs) == GOLDEN["coco"]


def test_shipped_coco_orders_match_the_bam_lists_they_were_checked_against():
    for fold in range(4):
        orders = hsnet_coco_orders(fold)
        assert sorted(orders) == list(range(fold + 1, 81, 4))
        assert sum(map(len, orders.values())) == bam_val_digests("coco20i")[str(fold)]["pairs"]
    assert [bam_val_digests("pascal5i")[str(f)]["queries"] for f in range(4)] == \
        [364, 445, 592, 336]


def test_hsnet_support_loop_that_would_never_end_is_an_error():
    with pytest.raises(ReplayError, match="never end"):
        hsnet.query_cycle([(1, "a")], {1: ["a"]}, 1, 1, 0)


def test_base_seeds_are_the_dataloader_draws():
    torch.manual_seed(321)  # what the official validate() does before each pass's iter()
    want = [int(torch.empty((), dtype=torch.int64).random_().item()) for _ in range(3)]
    seeds = pfenet.base_seeds(321)
    assert [next(seeds) for _ in range(3)] == want


class Draws(torch.utils.data.Dataset):
    """Draws from Python's global ``random`` in ``__getitem__``, as SemData does."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor([i, random.randint(1, 1000)])


def test_worker_streams_are_those_of_a_real_multi_worker_loader():
    loader = torch.utils.data.DataLoader(Draws(), batch_size=1, num_workers=2)
    torch.manual_seed(7)
    got = [tuple(int(v) for v in b[0]) for _ in range(2) for b in loader]  # two passes
    seeds = pfenet.base_seeds(7)
    want = []
    for _ in range(2):
        base = next(seeds)
        streams = [random.Random(base + w) for w in range(2)]
        want += [(i, streams[i % 2].randint(1, 1000)) for i in range(5)]
    assert got == want


class FakePascal(ListDataset):
    name = "pascal5i"

    def __init__(self):
        super().__init__()
        self.options = {"lists": "pfenet"}


def test_pfenet_family_counts_workers_and_golden():
    p = {name: resolve_protocol(name, "pascal5i", EXACT) for name in ("pfenet", "bam", "fssam")}
    assert (p["pfenet"].episodes, p["pfenet"].replay["workers"]) == (5001, 8)
    assert (p["bam"].episodes, p["bam"].replay["workers"], p["bam"].seeds[0]) == (1000, 8, 510)
    assert (p["fssam"].episodes, p["fssam"].replay["workers"]) == (1000, 32)
    coco = resolve_protocol("pfenet", "coco20i", EXACT)
    assert (coco.episodes, coco.replay["workers"], coco.replay["code"]) == (20001, 16, "pfenet")
    m = sample_episodes(FakePascal(), 0, "val", 5, 40, 321, p["pfenet"])
    # not PFENet's fold-0 lists: the official draws on other lists
    assert m.header["replay"]["lists"] == "differ" and m.header["replay"]["workers"] == 8
    for e in m.episodes:
        assert len(set(e.supports)) == 5 and e.query not in e.supports
    assert _digest([(e.class_id, e.query, e.supports) for e in m.episodes]) == \
        GOLDEN["pfenet_fake"]


def test_pfenet_hang_and_assert_cases_are_errors():
    r = random.Random(0)
    with pytest.raises(ReplayError, match="never"):
        pfenet.draw_episode(r, "q", [1], {1: ["q", "a"]}, 2)
    with pytest.raises(ReplayError, match="asserts"):
        pfenet.draw_episode(r, "q", [], {}, 1)


def test_vrpsam_counts():
    coco = resolve_protocol("vrp-sam", "coco20i", EXACT)
    assert coco.episodes == 250 and coco.replay["ranks"] == 4
    assert resolve_protocol("vrp-sam", "pascal5i", EXACT).episodes == 1000
    # the user's count wins over the official one
    assert resolve_protocol("pfenet", "pascal5i", {**EXACT, "episodes": 10}).episodes == 10


@pytest.mark.parametrize("protocol, dataset, match", [
    ("matcher", "lvis92i", "lvis_val.pkl"),
    ("hsnet", "synthetic", "no official episodes on synthetic"),
    ("persam", "perseg", "no replay of official episodes"),
])
def test_impossible_replays_say_why(protocol, dataset, match):
    ds = SimpleNamespace(name=dataset, options={})
    p = resolve_protocol(protocol, dataset, EXACT)
    from refseg_bench.replay import replay_episodes

    with pytest.raises(ReplayError, match=match):
        replay_episodes(ds, 0, "val", 1, 10, 0, p.replay)


def test_train_split_and_wrong_lists_are_errors():
    from refseg_bench.replay import replay_episodes

    spec = resolve_protocol("hsnet", "pascal5i", EXACT).replay
    with pytest.raises(ReplayError, match="split=val"):
        replay_episodes(SimpleNamespace(name="pascal5i"), 0, "train", 1, 10, 0, spec)
    with pytest.raises(ReplayError, match="lists=hsnet"):
        replay_episodes(SimpleNamespace(name="pascal5i", options={"lists": "pfenet"}), 0,
                        "val", 1, 10, 0, spec)


def test_episode_kinds():
    assert episode_kind({"seed": 0}) == "rule-equivalent"
    assert episode_kind({"replay": {"lists": "official"}}) == "exact"
    assert episode_kind({"replay": {"lists": "differ"}}) == "exact, lists differ"
    assert combined_kind(["exact", "exact, lists unverified"]) == "exact, lists unverified"
    assert combined_kind(["exact", "exact"]) == "exact"


def test_exact_must_be_a_boolean():
    from refseg_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="true or false"):
        resolve_protocol("hsnet", "pascal5i", {"exact": "yes"})


def test_rule_equivalent_manifests_have_no_replay_header():
    m = sample_episodes(ListDataset(), 0, "val", 1, 5, 0, resolve_protocol("hsnet", "fake"))
    assert "replay" not in m.header and episode_kind(m.header) == "rule-equivalent"
    assert np.all([e.query not in e.supports for e in m.episodes])


def test_one_choice_is_the_first_of_a_permutation_and_costs_as_much():
    a, b = np.random.RandomState(0), np.random.RandomState(0)
    for n in (1, 7, 346, 19217):
        assert a.choice(np.arange(n), 1, replace=False)[0] == b.permutation(n)[0]
    assert a.randint(1 << 30) == b.randint(1 << 30)  # both streams advanced alike
