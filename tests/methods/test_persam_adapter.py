"""The persam / persam_f adapters end to end on a tiny random SAM: every annotation kind,
1 and 3 shots, outputs at query size in [0, 1], checkpoint fall-back and provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from persam_testing import scene

from refseg_bench.annotations import simulate_annotation
from refseg_bench.episodes import Annotation, Episode, EpisodeBatch, EpisodeSpec
from refseg_bench.methods.persam import prior
from refseg_bench.methods.persam.adapter import PerSAM, PerSAMF
from refseg_bench.methods.persam.references import reference_mask
from refseg_bench.registry import METHODS, load_builtin_entries

TINY = dict(size="tiny")


def _episode(kind: str, shot: int, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    supports = [scene(70 + 9 * i, 96, seed + 10 + i) for i in range(shot)]
    query, _ = scene(83, 110, seed)
    anns = [simulate_annotation(m.astype(np.uint8), kind, rng) for _, m in supports]
    spec = EpisodeSpec(0, 0, 1, "q", tuple(f"s{i}" for i in range(shot)), seed)
    return Episode(spec, "blob", query, [im for im, _ in supports], anns,
                   [m.astype(np.uint8) for _, m in supports])


@pytest.fixture(scope="module")
def methods():
    out = {}
    for cls, extra in ((PerSAM, {}), (PerSAMF, {"train_iters": 30})):
        m = cls(**TINY, **extra)
        m.setup(torch.device("cpu"))
        out[cls.name] = m
    return out


@pytest.mark.parametrize("name", ["persam", "persam_f"])
@pytest.mark.parametrize("kind", ["mask", "box", "point", "scribble"])
@pytest.mark.parametrize("shot", [1, 3])
def test_predict_returns_query_sized_masks(methods, name, kind, shot):
    episodes = [_episode(kind, shot, seed) for seed in (0, 1)]
    out = methods[name].predict(EpisodeBatch(episodes, kind))
    assert len(out) == 2
    for ep, pred in zip(episodes, out, strict=True):
        assert pred.shape == ep.query_size and pred.dtype == torch.bool


def test_images_are_encoded_once_across_episodes(methods):
    m = methods["persam"]
    ep = _episode("mask", 3, seed=5)
    m.predict(EpisodeBatch([ep], "mask"))
    before = m.cache.stats.images_encoded
    m.predict(EpisodeBatch([ep, ep], "mask"))
    assert m.cache.stats.images_encoded == before


def test_k_shot_target_is_the_mean_of_per_reference_embeddings(methods):
    m = methods["persam"]
    ep = _episode("mask", 3, seed=2)
    states = m.encode(ep.support_images)
    masks = m.reference_masks(states, ep)
    each = [prior.mean_embedding(prior.foreground_features(
                s.features, prior.reference_cells(m.sam, k, (16, 16))))
            for s, k in zip(states, masks, strict=True)]
    torch.testing.assert_close(m.target_embedding(states, masks), torch.stack(each).mean(0))


def test_reference_masks_from_weak_annotations(methods):
    m = methods["persam"]
    img, mask = scene(70, 96, 4)
    state = m.encode([img])[0]
    rng = np.random.default_rng(0)
    full = simulate_annotation(mask.astype(np.uint8), "mask", rng)
    assert (reference_mask(m.sam, state, full) == mask).all()
    for kind in ("box", "point", "scribble"):
        ann = simulate_annotation(mask.astype(np.uint8), kind, rng)
        ref = reference_mask(m.sam, state, ann)
        assert ref.shape == mask.shape and ref.dtype == bool and ref.any()
    no_points = Annotation("point", raster=mask)
    with pytest.raises(ValueError, match="no point geometry"):
        reference_mask(m.sam, state, no_points)


def test_persam_f_fits_weights_that_sum_to_one(methods):
    m = methods["persam_f"]
    m.predict(EpisodeBatch([_episode("mask", 1, 3)], "mask"))
    assert m.last_fit is not None and len(m.last_fit.losses) == 30
    assert torch.isclose(m.last_fit.weights.sum(), torch.tensor(1.0), atol=1e-6)


def test_persam_f_fits_in_the_runners_grad_mode(methods):
    """PerSAM-F declares test-time gradients: the runner predicts under no_grad, not
    inference mode, and the fit turns gradients on itself."""
    from refseg_bench.runner import grad_mode

    method = methods["persam_f"]
    assert method.test_time_grad and not methods["persam"].test_time_grad
    with grad_mode(method):
        assert not torch.is_inference_mode_enabled()
        out = method.predict(EpisodeBatch([_episode("box", 1, 4)], "box"))
    assert out[0].shape == (83, 110)
    assert len(set(methods["persam_f"].last_fit.losses)) > 1


def test_describe_reports_random_weights(methods):
    d = methods["persam"].describe()
    assert d["weights"] == "random" and d["model"] == "sam/tiny@256"
    assert d["method"] == "persam" and d["size"] == "tiny"


def test_auto_without_checkpoint_falls_back_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFSEG_BENCH_CHECKPOINTS", str(tmp_path))
    m = PerSAM(size="auto")
    m.setup(torch.device("cpu"))
    err = capsys.readouterr().err
    assert "RANDOM" in err and "sam_vit_h_4b8939.pth" in err
    d = m.describe()
    assert d["weights"] == "random" and d["size"] == "tiny"
    assert "official checkpoints missing" in d["size_reason"]
    assert d["model"] == "sam/tiny@256"


def test_auto_uses_the_catalogue_file_when_present(tmp_path, monkeypatch):
    from refseg_bench.methods.persam.loading import PerSAMOptions, choose_sam
    from refseg_bench.models.checkpoints import catalogue_entry

    monkeypatch.setenv("REFSEG_BENCH_CHECKPOINTS", str(tmp_path))
    (tmp_path / catalogue_entry("sam_vit_h").file_name).write_bytes(b"")
    choice, spec = choose_sam(PerSAMOptions(), "persam")
    assert (spec.sam, spec.image_size, spec.checkpoint) == ("vit_h", 1024, "sam_vit_h")
    assert choice.name == "real"


def test_checkpoint_file_is_loaded_and_described(tmp_path):
    from persam_testing import tiny_sam

    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam(seed=7).state_dict(), path)
    m = PerSAM(size="tiny", model={"checkpoint": str(path)})
    m.setup(torch.device("cpu"))
    d = m.describe()
    assert d["weights"] == "unverified" and d["checkpoint"] == str(path)
    assert len(d["checkpoint_sha256"]) == 64
    ref = tiny_sam(seed=7).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in m.sam.state_dict().items())


def test_registered_and_configured():
    from refseg_bench.config import build_method, resolve_config

    load_builtin_entries()
    assert "persam" in METHODS and "persam_f" in METHODS
    cfg = resolve_config(["method=persam_f"])
    method = build_method(cfg)
    assert isinstance(method, PerSAMF)
    assert method.opts.presets["real"]["model"]["sam"] == "vit_h"
    assert method.opts.train_iters == 1000 and method.opts.lr == 1e-3
    assert method.opts.size == "auto" and method.options["size"] == "auto"


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="model.sam"):
        PerSAM(size="tiny", model={"sam": "vit_x"}).setup(torch.device("cpu"))
    with pytest.raises(ValueError, match="sam_variant"):  # the old name is refused by name
        PerSAM(sam_variant="vit_h")
    with pytest.raises(ValueError, match="train_iters"):
        PerSAMF(train_iters=0)
    with pytest.raises(RuntimeError, match="setup"):
        PerSAM(**TINY).predict(EpisodeBatch([_episode("mask", 1)], "mask"))


def _sharing_references(kind: str, n: int = 3) -> list[Episode]:
    """``n`` episodes with the same references (those of seed 0) and different queries."""
    base = _episode(kind, 2, seed=0)
    out = []
    for i in range(n):
        query, _ = scene(80 + 7 * i, 100, 100 + i)
        out.append(Episode(base.spec, base.class_name, query, base.support_images,
                           base.annotations, base.support_masks))
    return out


@pytest.mark.parametrize("cls", [PerSAM, PerSAMF])
def test_reference_stage_runs_once_per_reference_set_and_changes_nothing(cls):
    episodes = _sharing_references("box")
    extra = {"train_iters": 20} if cls is PerSAMF else {}
    cached, fresh = cls(**TINY, **extra), cls(**TINY, **extra, reference_cache_mb=0)
    for m in (cached, fresh):
        m.setup(torch.device("cpu"))
    calls = {"cached": 0, "fresh": 0}
    for name, m in (("cached", cached), ("fresh", fresh)):
        prepare = m.prepare_references

        def counting(ep, prepare=prepare, name=name):
            calls[name] += 1
            return prepare(ep)
        m.prepare_references = counting
    with torch.no_grad():
        a = cached.predict(EpisodeBatch(episodes, "box"))
        b = fresh.predict(EpisodeBatch(episodes, "box"))
    assert calls == {"cached": 1, "fresh": 3}
    assert cached.reference_cache.stats.hits == 2 and len(fresh.reference_cache) == 0
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # Another annotation of the same images is another reference set.
    other = _sharing_references("point", n=1)
    with torch.no_grad():
        cached.predict(EpisodeBatch(other, "point"))
    assert calls["cached"] == 2


def test_encoder_batch_encodes_across_the_episodes_of_a_batch():
    episodes = _sharing_references("mask", n=3)  # 3 queries, 2 shared references
    m = PerSAM(**TINY, encoder_batch=8)
    m.setup(torch.device("cpu"))
    with torch.no_grad():
        out = m.predict(EpisodeBatch(episodes, "mask"))
    assert m.cache.stats.encoder_passes == 1 and m.cache.stats.images_encoded == 5
    assert [p.shape for p in out] == [ep.query_size for ep in episodes]
    with torch.no_grad():
        m.predict(EpisodeBatch(episodes, "mask"))  # all cached now: no pass
    assert m.cache.stats.encoder_passes == 1
