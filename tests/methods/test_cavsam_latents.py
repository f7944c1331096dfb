"""CAV-SAM's pure stages on hand-built inputs: slerp + AdaIN, the alpha schedule, Otsu's
threshold, the frames TTGA prompts and the pseudo video's prompt geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refseg_bench.episodes import Annotation
from refseg_bench.methods.cavsam.latents import channel_stats, frame_alphas, slerp
from refseg_bench.methods.cavsam.otsu import otsu_mask, otsu_threshold
from refseg_bench.methods.cavsam.settings import TTGASpec
from refseg_bench.methods.cavsam.video import annotation_box, geometry_prompt, grid_box, rescale_xy


def _orthogonal_pair():
    p0 = torch.zeros(1, 2, 2, 2)
    p1 = torch.zeros(1, 2, 2, 2)
    p0[0, 0, 0, 0] = 3.0
    p1[0, 1, 1, 1] = 3.0
    return p0, p1


def test_slerp_endpoints_and_midpoint_of_orthogonal_latents():
    p0, p1 = _orthogonal_pair()
    assert torch.allclose(slerp(p0, p1, 0.0, adain=False), p0, atol=1e-6)
    assert torch.allclose(slerp(p0, p1, 1.0, adain=False), p1, atol=1e-6)
    mid = slerp(p0, p1, 0.5, adain=False)
    # 90 degrees apart: halfway is (p0 + p1) / sqrt 2, norm kept (a lerp would shrink it)
    assert torch.allclose(mid, (p0 + p1) / math.sqrt(2), atol=1e-6)
    assert torch.linalg.norm(mid) == pytest.approx(3.0, abs=1e-5)
    quarter = slerp(p0, p1, 0.25, adain=False)
    assert quarter[0, 0, 0, 0] == pytest.approx(3 * math.cos(math.pi / 8), abs=1e-5)
    assert quarter[0, 1, 1, 1] == pytest.approx(3 * math.sin(math.pi / 8), abs=1e-5)


def test_slerp_keeps_dtype_and_handles_parallel_latents():
    p = torch.arange(16, dtype=torch.float32).reshape(1, 4, 2, 2) + 1
    out = slerp(p, 2 * p, 0.5, adain=False)  # same direction: the clamp avoids 0 / 0
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out / torch.linalg.norm(out), p / torch.linalg.norm(p), atol=1e-3)


def test_adain_imposes_the_interpolated_channel_statistics():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(1, 4, 8, 8, generator=g) * torch.tensor([1., 2., 3., 4.])[:, None, None] + 5
    p1 = torch.randn(1, 4, 8, 8, generator=g) * 0.5 - torch.tensor([1., 0., 2., 3.])[:, None, None]
    for alpha in (0.0, 0.3, 1.0):
        out = slerp(p0, p1, alpha, adain=True)
        m0, s0 = channel_stats(p0)
        m1, s1 = channel_stats(p1)
        mean, std = channel_stats(out)
        assert torch.allclose(mean, (1 - alpha) * m0 + alpha * m1, atol=1e-4)
        # instance norm divides by the biased std, the target uses the unbiased one: the
        # imposed std is off by sqrt(n / (n - 1)) at most (n = 64 cells)
        assert torch.allclose(std, (1 - alpha) * s0 + alpha * s1, rtol=0.02)
    # at the endpoints AdaIN hands back (nearly) the endpoint itself
    assert torch.allclose(slerp(p0, p1, 0.0, adain=True), p0, rtol=0.02, atol=0.05)


def test_frame_alphas_follow_the_paper_schedule():
    assert frame_alphas(7, 0.2, 0.8) == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert frame_alphas(1, 0.2, 0.8) == [pytest.approx(0.5)]
    assert frame_alphas(0, 0.2, 0.8) == []


def _brute_force_otsu(values: np.ndarray) -> np.ndarray:
    """The split of the sorted distinct values maximising the between-class variance
    (exact values, no histogram): an independent reference."""
    best, best_t = -1.0, None
    levels = np.unique(values)
    for t in levels[:-1]:
        lo, hi = values[values <= t], values[values > t]
        score = lo.size * hi.size * (lo.mean() - hi.mean()) ** 2
        if score > best:
            best, best_t = score, t
    return values > best_t


def test_otsu_on_a_two_level_histogram():
    values = torch.tensor([0.2] * 70 + [0.7] * 30)
    thr = otsu_threshold(values)
    assert 0.2 <= thr < 0.7
    assert otsu_mask(values).sum() == 30


@pytest.mark.parametrize("counts", [(50, 10, 40), (10, 80, 10), (50, 30, 20)])
def test_otsu_on_three_levels_matches_the_exhaustive_split(counts):
    values = np.repeat([0.0, 0.5, 1.0], counts)
    got = otsu_mask(torch.from_numpy(values)).numpy()
    assert np.array_equal(got, _brute_force_otsu(values))


def test_otsu_on_bimodal_samples_matches_the_exhaustive_split():
    rng = np.random.default_rng(3)
    for n_low, n_high in ((300, 100), (120, 280)):
        values = np.concatenate([rng.normal(-1, 0.2, n_low), rng.normal(1.5, 0.3, n_high)])
        got = otsu_mask(torch.from_numpy(values), bins=256).numpy()
        ref = _brute_force_otsu(values)
        assert (got != ref).sum() <= 1  # a histogram may move one boundary sample
        assert got.sum() == pytest.approx(n_high, abs=3)


def test_otsu_on_a_constant_map_is_empty():
    values = torch.full((4, 4), 0.3)
    assert otsu_threshold(values) == pytest.approx(0.3)
    assert not otsu_mask(values).any()


def test_ttga_prompts_the_first_half_of_the_video():
    spec = TTGASpec()
    assert spec.frames_to_prompt(9, 7) == [1, 2, 3]
    assert spec.frames_to_prompt(5, 3) == [1]
    assert spec.frames_to_prompt(3, 1) == []
    assert spec.frames_to_prompt(9, 0) == []  # no generated frame: nothing to prompt
    assert TTGASpec(prompt_frames=5).frames_to_prompt(9, 7) == [1, 2, 3, 4, 5]


def test_prompt_geometry_is_rescaled_by_pixel_centres():
    assert np.allclose(rescale_xy(np.array([[0, 0], [9, 19]]), (20, 10), (40, 20)),
                       [[0.5, 0.5], [18.5, 38.5]])
    box = Annotation("box", np.zeros((20, 10), bool), boxes=np.array([[2, 3, 6, 9]], np.float32))
    assert np.allclose(annotation_box(box), [2, 3, 5, 8])  # exclusive maxima -> last pixel
    assert np.allclose(geometry_prompt(box, (20, 10), (20, 10), use_box=False)["box"],
                       [2, 3, 5, 8])
    pts = Annotation("point", np.zeros((20, 10), bool), points=np.array([[1, 2]], np.float32),
                     point_labels=np.array([1]))
    prompt = geometry_prompt(pts, (20, 10), (20, 10), use_box=False)
    assert np.allclose(prompt["points"], [[1, 2]]) and prompt["labels"].tolist() == [1]
    with pytest.raises(ValueError, match="no box geometry"):
        annotation_box(Annotation("mask", np.zeros((2, 2), bool)))


def test_grid_box_covers_the_cells_on_the_frame():
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1, 2] = mask[2, 3] = True
    assert np.allclose(grid_box(mask, (40, 80)), [40, 10, 79, 29])
    assert grid_box(torch.zeros(4, 4, dtype=torch.bool), (40, 80)) is None
