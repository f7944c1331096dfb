import pytest
from fakes import ListDataset

from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import SamplingError, sample_episodes


def _persam(ds, shot=1, n=1000, seed=0):
    return sample_episodes(ds, 0, "val", shot, n, seed, load_protocol("persam"))


@pytest.mark.parametrize("shot", [1, 2])
def test_first_items_are_references_and_every_other_item_a_query_once(shot):
    ds = ListDataset(per_class=5)
    m = _persam(ds, shot=shot)
    want = [(c, q, tuple(ds.items(0, "val", c)[:shot]))
            for c in ds.classes(0, "val") for q in ds.items(0, "val", c)[shot:]]
    assert [(e.class_id, e.query, e.supports) for e in m.episodes] == want
    assert all(e.query not in e.supports for e in m.episodes)
    assert [e.index for e in m.episodes] == list(range(len(want)))


def test_n_caps_and_seed_does_not_move_episodes():
    ds = ListDataset(per_class=5)
    assert len(_persam(ds, n=3).episodes) == 3
    a, b = _persam(ds, seed=0), _persam(ds, seed=9)
    assert [(e.query, e.supports) for e in a.episodes] == [(e.query, e.supports)
                                                           for e in b.episodes]


def test_a_class_with_only_references_is_an_error():
    with pytest.raises(SamplingError, match=r"2 reference\(s\) plus a target need 3"):
        _persam(ListDataset(per_class=1), shot=2)  # 2 items per class
