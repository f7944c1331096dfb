"""Weight-free baselines: oracle = label, empty = nothing, proto beats chance and is sane."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refseg_bench.datasets.synthetic import SyntheticDataset
from refseg_bench.episodes import ANNOTATION_KINDS, Annotation, Episode, EpisodeBatch, EpisodeSpec
from refseg_bench.loading import load_episode
from refseg_bench.methods.baselines import Empty, Oracle, Prototype, kmeans
from refseg_bench.methods.proto_features import (
    N_FEATURES,
    gaussian_blur,
    pixel_features,
    rgb_to_lab,
)
from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import sample_episodes
from refseg_bench.scorer import Scorer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ds(synthetic_root) -> SyntheticDataset:
    return SyntheticDataset(synthetic_root)


def episodes(ds, annotation: str, n: int = 12, shot: int = 1, fold: int = 0):
    manifest = sample_episodes(ds, fold, "val", shot, n, 0, load_protocol("hsnet"))
    loaded = [load_episode(ds, spec, annotation) for spec in manifest.episodes]
    assert all(le.episode is not None for le in loaded)
    return loaded


def miou(ds, preds, loaded, fold: int = 0) -> float:
    scorer = Scorer(ds.classes(fold, "val"))
    scorer.update(preds, [le.label for le in loaded], [le.spec.class_id for le in loaded])
    return scorer.compute().miou


def run(method, loaded, annotation):
    return method.predict(EpisodeBatch([le.episode for le in loaded], annotation))


def test_oracle_returns_the_label_foreground_and_scores_100(ds):
    loaded = episodes(ds, "mask")
    oracle = Oracle()
    with pytest.raises(RuntimeError, match="before setup"):
        run(oracle, loaded, "mask")
    oracle.setup(CPU, ds)
    preds = run(oracle, loaded, "mask")
    for p, le in zip(preds, loaded, strict=True):
        assert p.dtype == torch.bool
        np.testing.assert_array_equal(p.numpy(), le.label == 1)
    assert miou(ds, preds, loaded) == 100.0


def test_empty_predicts_nothing_and_scores_0(ds):
    loaded = episodes(ds, "box")
    empty = Empty()
    empty.setup(CPU, ds)
    preds = run(empty, loaded, "box")
    assert all(p.shape == le.episode.query_size and not p.any()
               for p, le in zip(preds, loaded, strict=True))
    assert miou(ds, preds, loaded) == 0.0


@pytest.mark.parametrize("annotation", ANNOTATION_KINDS)
def test_proto_shape_range_determinism_and_beats_all_foreground(ds, annotation):
    loaded = episodes(ds, annotation, n=10)
    proto = Prototype()
    proto.setup(CPU, ds)
    preds = run(proto, loaded, annotation)
    for p, le in zip(preds, loaded, strict=True):
        assert p.shape == le.episode.query_size and p.dtype == torch.float32
        assert 0 <= p.min() and p.max() <= 1
    again = run(Prototype(), loaded[:3], annotation)
    assert all(torch.equal(p, q) for p, q in zip(preds, again, strict=False))
    all_fg = [torch.ones(le.episode.query_size) for le in loaded]
    chance, score = miou(ds, all_fg, loaded), miou(ds, preds, loaded)
    assert score > chance + 15, (score, chance)
    assert score < 95


def test_proto_k_shot(ds):
    loaded = episodes(ds, "mask", n=6, shot=3)
    preds = run(Prototype(), loaded, "mask")
    assert [tuple(p.shape) for p in preds] == [le.episode.query_size for le in loaded]
    assert miou(ds, preds, loaded) > miou(ds, [torch.ones_like(p) for p in preds], loaded)


def _toy_episode(kind: str, raster: np.ndarray) -> Episode:
    """A red square on grey; the query has it elsewhere, at another size."""
    support = np.full((40, 50, 3), 128, np.uint8)
    support[10:25, 10:30] = (220, 30, 30)
    query = np.full((36, 44, 3), 128, np.uint8)
    query[20:34, 5:20] = (215, 35, 28)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:25, 10:30] = 1
    spec = EpisodeSpec(0, 0, 1, "q", ("s",), 0)
    ann = Annotation(kind, raster=raster)
    return Episode(spec, "red", query, [support], [ann], [mask])


@pytest.mark.parametrize("kind", ["mask", "box", "point", "scribble"])
def test_proto_finds_an_obvious_object_from_any_annotation(kind):
    raster = np.zeros((40, 50), bool)
    if kind in ("mask", "box"):
        raster[10:25, 10:30] = True
    else:
        raster[17, 20] = True
        if kind == "scribble":
            raster[16:19, 12:28] = True
    pred = Prototype().predict(EpisodeBatch([_toy_episode(kind, raster)], kind))[0] > 0.5
    truth = np.zeros((36, 44), bool)
    truth[20:34, 5:20] = True
    iou = (pred.numpy() & truth).sum() / (pred.numpy() | truth).sum()
    assert iou > 0.8, iou


def test_proto_annotation_covering_the_whole_support_predicts_foreground():
    ep = _toy_episode("box", np.ones((40, 50), bool))
    pred = Prototype().predict(EpisodeBatch([ep], "box"))[0]
    assert pred.shape == (36, 44) and bool((pred == 1).all())


def test_proto_options_are_checked_and_described():
    assert Prototype().describe() == {"model": "prototype (colour+texture)", "weights": "none"}
    with pytest.raises(ValueError, match="unknown feature groups"):
        Prototype(weights={"shape": 1.0})
    with pytest.raises(ValueError, match="smooth must be an odd"):
        Prototype(smooth=4)


def test_kmeans_is_deterministic_and_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(200, 2, generator=g) for c in centres])
    found = kmeans(x, 3)
    assert torch.equal(found, kmeans(x, 3))
    assert torch.cdist(centres, found).min(1).values.max() < 0.2
    assert kmeans(x[:2], 5).shape == (2, 2)


def test_gaussian_blur_equals_reflect_padded_convolution():
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(1))
    for sigma in (1.0, 2.5):
        r = max(int(3 * sigma + 0.5), 1)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum())
        kernel = (k[:, None] * k[None, :]).expand(3, 1, -1, -1)
        ref = F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), kernel, groups=3)
        torch.testing.assert_close(gaussian_blur(x, sigma), ref, atol=1e-5, rtol=1e-5)


def test_lab_of_reference_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 3, 1)
    lab = rgb_to_lab(rgb)[0, :, :, 0].T * 100
    expected = torch.tensor([[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(lab, expected, atol=0.05, rtol=0)


def test_pixel_features_shape_and_finite():
    x = torch.rand(1, 3, 30, 41)
    f = pixel_features(x)
    assert f.shape == (1, N_FEATURES, 30, 41) and torch.isfinite(f).all()
