"""Matcher's stages on hand-built inputs: bidirectional matching (reverse filter, top half
beyond 40), prompt subsets (counts, order, random stream), scores (EMD, purity, coverage,
filters, merging) and input preparation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refseg_bench.methods.matcher import matching, prep, scoring
from refseg_bench.methods.matcher.emd import EmdPool, emd_score
from refseg_bench.methods.matcher.proposals import Proposals
from refseg_bench.methods.matcher.settings import SETTINGS, Setting, auto_setting


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def _three_by_three(r1_outside: bool):
    """3 x 3 grids in 3-d features. Reference cells 0 and 1 are the mask. Forward
    matching pairs r0 -> t0 and r1 -> t1; r2 (outside the mask) equals t0, so the reverse
    matching sends t0 to r2 and the pair (r0, t0) is dropped."""
    e1, e2, e3 = (1, 0, 0), (0, 1, 0), (0, 0, 1)
    ref = [(1, 0, 0.5), e2, e1] + [(-1, 0, 0)] * 6
    if r1_outside:  # r3 is a better reverse partner of t1 than r1
        ref = [(1, 0, 0.5), (0, 1, 0.5), e1, e2] + [(-1, 0, 0)] * 5
    tar = [e1, e2] + [e3] * 7
    pool = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float32)
    return _unit(*ref), _unit(*tar), pool


def test_reverse_matching_drops_pairs_whose_partner_leaves_the_mask():
    ref, tar, pool = _three_by_three(r1_outside=False)
    m = matching.bidirectional_match(ref, tar, pool, grid=3, img_size=42, use_box=False)
    assert m.points.tolist() == [[21, 7]]  # only t1 (cell 1: x = 14 + 7, y = 7)
    torch.testing.assert_close(m.cost, (1 - ref @ tar.t()) / 2)


def test_reverse_matching_keeps_all_when_none_survive():
    ref, tar, pool = _three_by_three(r1_outside=True)
    m = matching.bidirectional_match(ref, tar, pool, grid=3, img_size=42, use_box=True)
    assert sorted(m.points.tolist()) == [[7, 7], [21, 7]]
    assert m.box.tolist() == [7, 7, 21, 7]


def test_more_than_40_matches_keep_the_better_half():
    """50 masked reference cells matched one to one (cosine cos(theta_i) decreasing with
    i): 25 survive, the 25 most similar."""
    n, grid = 64, 8
    theta = torch.linspace(0.1, 1.2, n)
    tar = torch.cat([torch.eye(n), torch.zeros(n, 1)], dim=1)
    ref = torch.cat([torch.diag(torch.cos(theta)), torch.sin(theta)[:, None]], dim=1)
    pool = (torch.arange(n) < 50).float()
    m = matching.bidirectional_match(ref, tar, pool, grid=grid, img_size=grid * 14,
                                     use_box=False)
    expected = {((i % grid) * 14 + 7, (i // grid) * 14 + 7) for i in range(25)}
    assert len(m.points) == 25 and {tuple(p) for p in m.points.tolist()} == expected


def test_combinations_in_the_official_colex_order():
    assert matching.colex_combinations(4, 2) == [[0, 1], [0, 2], [1, 2], [0, 3], [1, 3],
                                                 [2, 3]]
    assert matching.colex_combinations(3, 3) == [[0, 1, 2]]
    assert matching.colex_combinations(2, 3) == []
    assert len(matching.colex_combinations(8, 5)) == math.comb(8, 5)


@pytest.mark.parametrize("n,rng_used", [(8, False), (12, True)])
def test_subset_counts_and_random_stream(n, rng_used):
    points = np.stack([np.arange(n) * 10, np.arange(n) * 5], axis=1)
    stream = random.Random(3)
    sets = matching.sample_prompts(points, (4, 6), 30, stream)
    assert [s.shape for s in sets] == [
        (30 if rng_used else math.comb(n, i), i, 2) for i in (4, 5, 6)]
    replay = random.Random(3)
    if rng_used:  # the same draws as the global random module would make from seed 3
        draws = [[replay.sample(range(n), i) for _ in range(30)] for i in (4, 5, 6)]
        for got, drawn in zip(sets, draws, strict=True):
            assert (got == np.take(points, drawn, axis=0)).all()
    assert stream.random() == replay.random()  # stream advanced only when > 8 points


def test_subset_sizes_are_capped_by_the_number_of_points():
    points = np.array([[7, 7], [21, 7], [35, 7]])
    sets = matching.sample_prompts(points, (4, 6), 30, random.Random(0))
    assert [s.shape for s in sets] == [(1, 3, 2)]  # sizes range(min(4, 3), min(6, 3) + 1)
    sets = matching.sample_prompts(points, (1, 6), 64, random.Random(0))
    assert [s.shape for s in sets] == [(3, 1, 2), (3, 2, 2), (1, 3, 2)]


def test_kmeans_centres_replay_the_torch_stream():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 518, (30, 2))
    a = matching.cluster_centres(points, 8, torch.Generator().manual_seed(5))
    torch.manual_seed(5)  # the official code draws from the global generator
    b = matching.cluster_centres(points, 8, torch.default_generator)
    assert a.dtype == np.int64 and a.shape == (8, 2) and (a == b).all()
    few = matching.cluster_centres(points[:3], 8, torch.Generator().manual_seed(0))
    assert sorted(few.tolist()) == sorted(points[:3].tolist())  # one centre per point


def _proposals(masks: list[np.ndarray]) -> Proposals:
    m = np.stack(masks)
    return Proposals(np.packbits(m, axis=-1), torch.ones(len(masks)),
                     torch.zeros(len(masks), 4, dtype=torch.int64))


def test_purity_and_coverage_on_a_hand_built_case():
    size = 28  # a 2 x 2 grid of 14-pixel cells
    left = np.zeros((size, size), bool)
    left[:, :14] = True  # two cells
    one = np.zeros((size, size), bool)
    one[0, 0] = True  # one pixel: one cell
    empty = np.zeros((size, size), bool)  # the official rule: every cell counts
    props = _proposals([left, one, empty])
    matched = np.array([[3, 3], [3, 20], [20, 20], [40, 3]])  # the last clips to x = 27
    purity, coverage = scoring.purity_coverage(props, matched)
    torch.testing.assert_close(purity, torch.tensor([2 / 2, 0 / 1, 0 / 4]) + 1e-6)
    torch.testing.assert_close(coverage, torch.tensor([2 / 4, 0 / 4, 0 / 4]) + 1e-6)
    assert props.grid[2].all() and props.contains(matched)[0].tolist() == [1, 1, 0, 0]


def test_emd_score_on_hand_built_costs():
    cost = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    assert emd_score(cost, np.array([True, True])) == pytest.approx(1.0)
    assert emd_score(cost, np.array([True, False])) == pytest.approx(0.5)
    pool = EmdPool(2)
    grids = torch.tensor([[[True, True]], [[True, False]], [[True, True]]])
    assert pool.scores(cost, grids) == pytest.approx([1.0, 0.5, 1.0])
    assert (pool.solved, pool.requested) == (2, 3)  # the repeated grid is solved once
    pool.close()


def test_merging_rules():
    coco, fss = SETTINGS["coco"], SETTINGS["fss"]
    # distances 0.1 / 0.2 / 0.5: normalised 0, 0.2, 0.8 -> only the best is < 0.1
    assert scoring._merge(torch.tensor([0.8, 0.9, 0.5]), coco).tolist() == [1]
    # distances 0.1 / 0.105: both < 0.33, normalised 0 and 0.005 / 0.105 < 0.1: both merged
    assert sorted(scoring._merge(torch.tensor([0.9, 0.895]), coco).tolist()) == [0, 1]
    # top-k with score / max > 0.7
    picked = scoring._merge(torch.tensor([1.0, 0.75, 0.6, 0.71]), fss)
    assert sorted(picked.tolist()) == [0, 1, 3]
    capped = scoring._merge(torch.linspace(1.0, 0.9, 20), fss)
    assert len(capped) == fss.num_merging_mask


def test_filters_skip_the_emd_of_removed_masks():
    """COCO's purity filter removes masks before any EMD: only survivors are solved."""
    size = 28
    full = np.ones((size, size), bool)
    corner = np.zeros((size, size), bool)
    corner[:14, :14] = True
    far = np.zeros((size, size), bool)
    far[14:, 14:] = True  # no matched point inside: purity 1e-6
    props = _proposals([full, corner, far])
    matched = np.array([[3, 3], [5, 5]])
    cost = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    pool = EmdPool(1)
    chosen = scoring.choose(props, matched, cost, SETTINGS["coco"], pool)
    assert pool.requested == 2 and 2 not in chosen.tolist()


def test_reference_pool_and_centre_square():
    masks = torch.zeros(2, 28, 28)
    masks[0, 0, 0] = 1
    assert prep.reference_pool(masks).tolist() == [1, 0, 0, 0] + [0] * 4
    empty = prep.reference_pool(torch.zeros(2, 28, 28))  # every shot gets the square
    assert empty.tolist() == [1.0] * 8


def test_sam_image_truncates_like_the_official_byte_cast():
    img = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    x = prep.resized_tensor(img, 16)
    out = prep.sam_image(x)
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 * 255).byte()
    assert (out == expected.permute(1, 2, 0).numpy()).all()
    assert (out.astype(int) - img).min() >= -1


def test_settings_and_auto_choice():
    assert SETTINGS["coco_5shot"].num_merging_mask == 5 and SETTINGS["coco"].use_dense_mask
    assert SETTINGS["fss"].use_points_or_centers is False  # 8 k-means++ centres
    assert SETTINGS["pascal_part"].use_points_or_centers and SETTINGS["pascal_part"].use_box
    assert auto_setting("coco20i", 1) == "coco" and auto_setting("coco20i", 5) == "coco_5shot"
    assert auto_setting("fss1000", 5) == "fss_5shot" and auto_setting("synthetic", 1) == "fss"
    with pytest.raises(ValueError):
        Setting(sample_range=(5, 4))
