"""The ``fss_sam2`` adapter: predictions at the query size, k shots, weak references, the
per-fold weights rule, precision and what goes into the run record."""

from __future__ import annotations

import pytest
import torch
from fss_sam2_testing import begin, tiny_method, val_batch

from refseg_bench.errors import ConfigError


@pytest.fixture
def method(tmp_path):
    m = tiny_method(tmp_path, untrained=True)
    begin(m, 0)
    return m


def test_predict_before_begin_unit_is_refused(tmp_path):
    m = tiny_method(tmp_path, untrained=True)
    with pytest.raises(RuntimeError, match="begin_unit"):
        m.predict(val_batch(m.dataset, 0, 1, "mask"))


@pytest.mark.parametrize("shot", [1, 3])
def test_predictions_are_probabilities_at_the_query_size(method, shot):
    batch = val_batch(method.dataset, 0, shot, "mask", n=3)
    with torch.inference_mode():
        out = method.predict(batch)
    assert len(out) == 3
    for p, e in zip(out, batch, strict=True):
        assert p.shape == e.query_size and p.dtype == torch.float32
        assert 0 <= p.min() and p.max() <= 1


def test_cached_features_give_identical_predictions(method):
    batch = val_batch(method.dataset, 0, 1, "mask", n=2)
    with torch.inference_mode():
        first = method.predict(batch)
        hits = method.net.cache.stats.hits
        again = method.predict(batch)
    assert method.net.cache.stats.hits > hits
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_support_memories_are_cached_by_content_under_the_fold_weights(tmp_path):
    cached = tiny_method(tmp_path / "a", untrained=True)
    fresh = tiny_method(tmp_path / "b", untrained=True, memory_cache_mb=0)
    batch = val_batch(cached.dataset, 0, 2, "mask", n=3)
    out = {}
    for name, m in (("cached", cached), ("fresh", fresh)):
        begin(m, 0, shot=2)
        with torch.inference_mode():
            out[name] = m.predict(batch) + m.predict(batch)
    # A memory computed in another batch may differ in its last bits, never a mask.
    for a, b in zip(out["cached"], out["fresh"], strict=True):
        assert torch.equal(a > 0.5, b > 0.5)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    from refseg_bench.models.cache import image_sha256

    stats = cached.net.memory_cache.stats
    distinct = len({(image_sha256(im), image_sha256(m)) for e in batch.episodes
                    for im, m in zip(e.support_images, e.support_masks, strict=True)})
    assert stats.computed == distinct and stats.hits == distinct  # the second pass: all
    assert len(fresh.net.memory_cache) == 0
    state = cached.net.memory_state  # other weights: other keys
    with torch.no_grad():
        next(iter(cached.net.model.learnable_modules()["memory_encoder"].parameters())).add_(1)
    cached.net.use_memory_cache(cached.net.memory_cache)
    assert cached.net.memory_state != state


def test_official_kshot_calibration_changes_only_multi_shot(tmp_path):
    default = tiny_method(tmp_path / "a", untrained=True)
    official = tiny_method(tmp_path / "b", untrained=True, kshot_calibration="official")
    for m in (default, official):
        begin(m, 0, shot=3)
    one = val_batch(default.dataset, 0, 1, "mask", n=2)
    three = val_batch(default.dataset, 0, 3, "mask", n=2)
    with torch.inference_mode():
        same = [torch.equal(a, b) for a, b in zip(default.predict(one), official.predict(one),
                                                  strict=True)]
        differ = [(a - b).abs().max() > 1e-6 for a, b in zip(default.predict(three),
                                                             official.predict(three),
                                                             strict=True)]
    assert all(same) and all(differ)


@pytest.mark.parametrize("annotation", ["box", "point", "scribble"])
def test_weak_references_use_sam2_masks_from_the_geometry(tmp_path, annotation):
    m = tiny_method(tmp_path, untrained=True)
    begin(m, 1, annotation)
    batch = val_batch(m.dataset, 1, 2, annotation, n=2)
    assert all(e.support_masks is None for e in batch)
    with torch.inference_mode():
        tensors = m.episode_tensors(batch.episodes)
        out = m.predict(batch)
    assert tensors.masks.shape == (2, 2, 64, 64) and set(tensors.masks.unique().tolist()) <= {0, 1}
    assert len(out) == 2 and m.weak_counts["sam2"] + m.weak_counts["raster_fallback"] == 8
    assert m.describe()["weak_support_masks"] == m.weak_counts


def test_sam2_predicting_nothing_falls_back_to_the_raster(tmp_path):
    m = tiny_method(tmp_path, untrained=True)
    begin(m, 0, "box")
    head = m.net.sam2.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.bias.fill_(-100.0)  # SAM 2's object-score gate empties every prediction
    batch = val_batch(m.dataset, 0, 1, "box", n=2)
    with torch.inference_mode():
        masks = m.episode_tensors(batch.episodes).masks
    from refseg_bench.methods.fss_sam2.references import raster_masks

    assert torch.equal(masks, raster_masks(batch.episodes, 64))
    assert m.weak_counts == {"sam2": 0, "raster_fallback": 2, "raster": 0}


def test_raster_weak_support_uses_the_filled_box(tmp_path):
    m = tiny_method(tmp_path, untrained=True, weak_support="raster")
    begin(m, 0, "box")
    batch = val_batch(m.dataset, 0, 1, "box", n=1)
    with torch.inference_mode():
        masks = m.episode_tensors(batch.episodes).masks
    box = batch.episodes[0].annotations[0].boxes[0]
    h, w = batch.episodes[0].support_images[0].shape[:2]
    inside = masks[0, 0, int(box[1] * 64 / h) + 1, int(box[0] * 64 / w) + 1]
    assert inside == 1 and m.weak_counts["raster"] == 1


def test_missing_fold_weights_are_trained_first_then_loaded(tmp_path):
    m = tiny_method(tmp_path)
    begin(m, 2)
    record = m.describe()["fold_weights"]["2"]
    assert record["source"] == "trained" and record["weights"] == "trained"
    assert (m.checkpoint_directory(m.dataset, 2) / "fssam.pth").is_file()
    assert m.describe()["weights"] == "random"  # tiny foundations
    again = tiny_method(tmp_path, train_if_missing=False)
    begin(again, 2, "point")  # one checkpoint per fold serves every annotation kind
    assert again.describe()["fold_weights"]["2"]["sha256"] == record["sha256"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_bf16_is_refused_on_the_cpu(tmp_path):
    with pytest.raises(ValueError, match="bf16 needs a CUDA device"):
        tiny_method(tmp_path, precision="bf16")


def test_stage_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="kshot_calibration"):
        tiny_method(tmp_path, kshot_calibration="first")
    with pytest.raises(ConfigError, match="imr_version"):
        tiny_method(tmp_path, imr_version="v3")
    with pytest.raises(ConfigError, match=r"memory_cache_mb must be >= 0 \(got -1\)"):
        tiny_method(tmp_path, memory_cache_mb=-1)
    with pytest.raises(ConfigError, match=r"batch_size must be >= 1 \(got 0\)"):
        tiny_method(tmp_path, batch_size=0)


def test_describe_records_the_recipe_and_provenance(method):
    info = method.describe()
    assert info["model"] == "fss_sam2/sam2.0-tiny@64+dinov2-tiny@70"
    assert info["precision"] == "fp32" and info["size"] == "tiny"
    assert "issue #3" in info["weighted_gap"]
    assert info["sam2"]["weights"] == "random" and info["dino"]["weights"] == "random"
    assert info["fold_weights"]["0"]["source"] == "untrained"
    assert info["train_settings"]["lr"] == 1e-3


def test_a_sigmoid_of_exactly_one_half_is_foreground_as_in_the_official_loop(method):
    """FSSAM's test.py keeps ``sigmoid(logit) >= 0.5``; the scorer keeps ``p > 0.5``. Logits
    within ~1e-7 of 0 have a float32 sigmoid of exactly 0.5 and must stay foreground."""
    logits = torch.tensor([0.0, 1e-8, -1e-8, -5e-8, 5e-8, 1e-3, -1e-3, -1.0, 1.0])
    batch, s, out = val_batch(method.dataset, 0, 1, "mask", n=1), method.net.image_size, []
    for logit in logits:  # a constant logit map stands in for the network's output
        method.net.logits = lambda tensors, v=logit: torch.full((1, 1, s, s), float(v))
        with torch.inference_mode():
            out += method.predict(batch)
    assert (torch.sigmoid(logits[:5]) == 0.5).all()  # the ties this is about
    official = torch.sigmoid(logits) >= 0.5  # test.py's rule
    assert official.tolist() == [True] * 5 + [True, False, False, True]
    for p, logit, want in zip(out, logits, official.tolist(), strict=True):
        assert ((p > 0.5) == want).all()  # the scorer's rule, at every pixel
        assert (p - torch.sigmoid(logit)).abs().max() <= 6e-8  # still the probability
