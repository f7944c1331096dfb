"""PerSAM's location prior: reference cells, embeddings, confidence map, points, guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from persam_testing import scene, tiny_sam

from refseg_bench.methods.persam import prior
from refseg_bench.methods.persam.sam_ops import image_state
from refseg_bench.models.sam import encode_sam_images


@pytest.fixture(scope="module")
def sam():
    return tiny_sam()


@pytest.fixture(scope="module")
def encoded(sam):
    img, mask = scene(90, 120, seed=3)
    return image_state(sam, encode_sam_images(sam, [img]), img.shape[:2]), mask


def test_points_are_argmax_and_argmin_of_the_confidence_map():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(37, 53, generator=g)
    points, labels = prior.select_points(conf, negative=True)
    (px, py), (nx, ny) = points
    assert labels.tolist() == [1, 0]
    assert conf[py, px] == conf.max() and conf[ny, nx] == conf.min()
    # x is the column, y the row: a distinct maximum at (row 5, col 40)
    conf[5, 40] = 2.0
    conf[30, 2] = -1.0
    points, _ = prior.select_points(conf, negative=True)
    assert points.tolist() == [[40, 5], [2, 30]]
    only_pos, lab = prior.select_points(conf, negative=False)
    assert only_pos.tolist() == [[40, 5]] and lab.tolist() == [1]


def test_points_on_a_real_confidence_map(sam, encoded):
    state, mask = encoded
    emb = prior.mean_embedding(prior.foreground_features(
        state.features, prior.reference_cells(sam, mask, (16, 16))))
    conf = prior.confidence_map(sam, state, emb)
    assert conf.shape == mask.shape
    assert conf.max() <= 1 + 1e-5 and conf.min() >= -1 - 1e-5  # a cosine similarity
    (px, py), (nx, ny) = prior.select_points(conf)[0]
    assert conf[py, px] == conf.max() and conf[ny, nx] == conf.min()


def test_confidence_map_is_cosine_similarity_on_the_feature_grid(sam, encoded):
    state, _ = encoded
    emb = torch.randn(state.features.shape[1], generator=torch.Generator().manual_seed(1))
    feat = state.features[0]
    cos = F.cosine_similarity(feat, emb[:, None, None], dim=0)  # (h, w)
    low = F.interpolate(cos[None, None], scale_factor=4, mode="bilinear")
    expected = sam.postprocess_masks(low, state.input_size, state.original_size)[0, 0]
    torch.testing.assert_close(prior.confidence_map(sam, state, emb), expected)


def test_attention_guidance_is_sigmoid_of_zscore_on_the_grid():
    conf = torch.rand(40, 60, generator=torch.Generator().manual_seed(2))
    out = prior.attention_guidance(conf, (16, 16))
    assert out.shape == (1, 1, 1, 256)
    z = (conf - conf.mean()) / conf.std(unbiased=True)
    expected = torch.sigmoid(F.interpolate(z[None, None], size=(16, 16), mode="bilinear"))
    torch.testing.assert_close(out, expected.reshape(1, 1, 1, 256))


def test_embeddings_mean_and_max_mean():
    fg = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    torch.testing.assert_close(prior.mean_embedding(fg), torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(prior.max_mean_embedding(fg), torch.tensor([2.5, -0.5]))


def test_reference_cells_follow_the_mask_and_never_come_back_empty(sam):
    mask = np.zeros((128, 256), bool)  # resized to 128 x 256 on a 256 canvas: 16 px cells
    mask[:, :128] = True
    cells = prior.reference_cells(sam, mask, (16, 16))
    assert cells[:8, :8].all() and not cells[:, 8:].any() and not cells[8:].any()
    tiny = np.zeros((128, 256), bool)
    tiny[70, 200] = True  # far below one cell: the official threshold keeps nothing
    cells = prior.reference_cells(sam, tiny, (16, 16))
    assert cells.sum() == 1 and cells[70 // 16, 200 // 16]


def test_perseg_colour_sets_the_cell_threshold(sam):
    """Drawn at 128, a cell needs (almost) all of its sampled pixels inside the mask;
    at 255, half of them suffice: the official threshold depends on the colour."""
    mask = np.zeros((256, 256), bool)
    mask[:, :136] = True  # cell 8 (pixels 128..143) is half covered at its centre
    at128 = prior.reference_cells(sam, mask, (16, 16), foreground_value=128)
    at255 = prior.reference_cells(sam, mask, (16, 16), foreground_value=255)
    assert at128[:, :8].all() and not at128[:, 8].any()
    assert at255[:, :9].all() and not at255[:, 9:].any()
