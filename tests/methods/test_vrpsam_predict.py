"""VRP-SAM inference at tiny size: shapes for every annotation and shot, batched decoding,
input conversion, per-fold checkpoints and provenance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from vrpsam_testing import begin, tiny_method, val_batch

from refseg_bench.episodes import Annotation
from refseg_bench.errors import CheckpointError
from refseg_bench.methods.vrpsam.inputs import annotation_tensor
from refseg_bench.methods.vrpsam.sam_head import decode_masks, decode_masks_loop


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return tiny_method(tmp_path_factory.mktemp("ckpt"), untrained=True)


@pytest.mark.parametrize("annotation", ["mask", "box", "point", "scribble"])
@pytest.mark.parametrize("shot", [1, 3])
def test_predict_shapes_for_every_annotation_and_shot(untrained, annotation, shot):
    batch = val_batch(untrained.dataset, fold=1, shot=shot, annotation=annotation)
    begin(untrained, 1, annotation, shot)
    with torch.inference_mode():
        preds = untrained.predict(batch)
    assert len(preds) == len(batch)
    for p, e in zip(preds, batch.episodes, strict=True):
        assert p.shape == e.query_size and p.dtype == torch.float32
        assert 0 <= float(p.min()) and float(p.max()) <= 1


def test_k_shot_concatenates_the_prompt_sets(untrained):
    batch = val_batch(untrained.dataset, fold=0, shot=3, annotation="mask", n=2)
    from refseg_bench.methods.vrpsam.inputs import episode_tensors

    t = episode_tensors(batch.episodes, untrained.net.image_size)
    enc = untrained.net.encoder.eval()
    with torch.no_grad():
        tokens = enc.encode_shots(t.query, t.supports, t.masks)
        second = enc(t.query, t.supports[:, 1], t.masks[:, 1])
    assert tokens.shape == (2, 3 * 50, 64)
    assert torch.allclose(tokens[:, 50:100], second, atol=1e-6)


def test_batched_decoder_equals_the_unmodified_decoder_per_episode(untrained):
    sam = untrained.net.sam
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 64, 8, 8, generator=gen)
    prompts = torch.randn(3, 100, 64, generator=gen)
    with torch.no_grad():
        fast, slow = decode_masks(sam, emb, prompts), decode_masks_loop(sam, emb, prompts)
    assert fast.shape == (3, 1, 32, 32)
    assert torch.allclose(fast, slow, atol=1e-5)


def _through_the_stock_transformer(sam, embeddings, prompts):
    """The batched decode with segment-anything's own ``TwoWayTransformer.forward``."""
    dec, pe = sam.mask_decoder, sam.prompt_encoder
    b, c, h, w = embeddings.shape
    output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens[None].expand(b, -1, -1), prompts], dim=1)
    src = embeddings + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
    hs, src = dec.transformer(src, pe.get_dense_pe().expand(b, -1, -1, -1), tokens)
    upscaled = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    weights = dec.output_hypernetworks_mlps[0](hs[:, 1, :])
    _, cu, hu, wu = upscaled.shape
    return (weights[:, None, :] @ upscaled.reshape(b, cu, hu * wu)).reshape(b, 1, hu, wu)


def test_decoder_image_side_cached_per_image_gives_the_stock_decode_bit_for_bit(untrained):
    """The image side is computed once per image (another batch) and gathered per episode;
    the stepped transformer must equal segment-anything's own, bit for bit."""
    from refseg_bench.methods.vrpsam.sam_head import DecoderImageSide, decoder_image_side

    sam = untrained.net.sam
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(3, 64, 8, 8, generator=gen)
    pick = [0, 2, 2, 1, 0]  # episodes' query images, with repeats
    prompts = torch.randn(len(pick), 100, 64, generator=gen)
    with torch.no_grad():
        expected = _through_the_stock_transformer(sam, images[pick], prompts)
        rows = [vars(decoder_image_side(sam, images[i:i + 1])) for i in range(3)]
        side = DecoderImageSide.cat([rows[i] for i in pick])
        assert torch.equal(decode_masks(sam, None, prompts, side), expected)
        assert torch.equal(decode_masks(sam, images[pick], prompts), expected)
    with pytest.raises(ValueError, match="must agree on batch size"):
        decode_masks(sam, None, prompts[:2], side)


def test_points_survive_shrinking():
    raster = np.zeros((400, 600), bool)
    points = np.array([[0, 0], [599, 399], [301, 200]], np.float32)
    raster[points[:, 1].astype(int), points[:, 0].astype(int)] = True
    ann = Annotation("point", raster=raster, points=points, point_labels=np.ones(3, np.int64))
    small = annotation_tensor(ann, 64)
    assert small.sum() == 3 and small[0, 0] == 1 and small[63, 63] == 1


def test_missing_checkpoint_without_training_says_how_to_train(tmp_path):
    method = tiny_method(tmp_path, train_if_missing=False)
    with pytest.raises(CheckpointError, match="refseg-bench train method=vrpsam.*fold=2"):
        begin(method, 2, "box")


def test_predict_before_the_unit_is_announced_is_refused(tmp_path):
    method = tiny_method(tmp_path, untrained=True)
    with pytest.raises(RuntimeError, match="begin_unit"):
        method.predict(val_batch(method.dataset, fold=0, shot=1, annotation="mask", n=1))


def test_external_checkpoint_per_fold_is_loaded_and_described(tmp_path, untrained):
    from refseg_bench.methods.vrpsam import store

    for fold in (0, 1):
        with torch.no_grad():
            untrained.net.encoder.merge_1[0].weight.fill_(0.01 * (fold + 1))
        store.save_encoder(untrained.net.encoder, tmp_path / f"vrp_fold{fold}.pt")
    method = tiny_method(tmp_path / "unused", checkpoint=str(tmp_path / "vrp_fold{fold}.pt"))
    for fold in (0, 1):
        begin(method, fold)
        with torch.inference_mode():
            method.predict(val_batch(method.dataset, fold, 1, "mask", n=1))
        assert float(method.net.encoder.merge_1[0].weight[0, 0].detach()) == \
            pytest.approx(0.01 * (fold + 1))
    info = method.describe()
    assert set(info["fold_weights"]) == {"0", "1"}
    assert {v["source"] for v in info["fold_weights"].values()} == {"checkpoint"}
    # A file given by path has no published sha256: never "official".
    assert info["trained_weights"] == "unverified"
    assert info["weights"] == "random"  # the tiny SAM and backbone are random
    assert len(info["checkpoint_sha256"]) == 2


def test_feature_caches_reuse_features_and_keep_the_masks(tmp_path):
    from refseg_bench.episodes import EpisodeBatch

    cached = tiny_method(tmp_path / "a", untrained=True)
    fresh = tiny_method(tmp_path / "b", untrained=True, support_cache_mb=0, image_cache_mb=0)
    batch = val_batch(cached.dataset, fold=0, shot=2, annotation="scribble", n=3)
    # The same references with every episode's query: the supports repeat across batches.
    repeat = EpisodeBatch([replace(e, support_images=batch.episodes[0].support_images,
                                   annotations=batch.episodes[0].annotations)
                           for e in batch.episodes], "scribble")
    out = {}
    for name, m in (("cached", cached), ("fresh", fresh)):
        begin(m, 0, "scribble", 2)
        with torch.inference_mode():
            out[name] = m.predict(batch) + m.predict(repeat)
    # Features computed in another batch may differ in their last bits, never a mask.
    for a, b in zip(out["cached"], out["fresh"], strict=True):
        assert torch.equal(a > 0.5, b > 0.5)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    distinct = len({(id(e.support_images[i]), id(e.annotations[i]))
                    for e in batch.episodes for i in range(2)})
    # Two entries per support: its frozen features and its learnable side (SupportPrompt).
    stats = cached.support_cache.stats
    assert stats.computed == 2 * distinct and stats.hits == 4  # repeat: all from the cache
    assert fresh.support_cache.stats.computed == 2 * (distinct + 2)
    assert len(fresh.support_cache) == 0
    # Images: each distinct one's trunk once (as a query or a support), each query's layer4,
    # reduced mid features and decoder image side once; the repeat batch takes them all
    # from the image cache.
    from refseg_bench.models.cache import image_sha256

    images = {image_sha256(im) for e in batch.episodes
              for im in (e.query_image, *e.support_images)}
    queries = {image_sha256(e.query_image) for e in batch.episodes}
    assert cached.image_cache.stats.computed == len(images) + 3 * len(queries)
    assert fresh.image_cache.stats.computed > cached.image_cache.stats.computed
    assert len(fresh.image_cache) == 0


def test_the_learnable_support_side_is_cached_under_the_weights_that_computed_it(tmp_path):
    """Another fold's encoder (here: other merge_1 weights) must not reuse a support's
    cached prototype and tokens, nor a query's reduced features."""
    cached = tiny_method(tmp_path / "a", untrained=True)
    fresh = tiny_method(tmp_path / "b", untrained=True, support_cache_mb=0, image_cache_mb=0)
    batch = val_batch(cached.dataset, fold=0, shot=1, annotation="mask", n=3)
    begin(cached, 0, "mask", 1)
    with torch.inference_mode():
        before = cached.predict(batch)
    for m in (cached, fresh):  # the weights the next activation loads
        m._initial_state["merge_1.0.weight"] = m._initial_state["merge_1.0.weight"] * 1.5
        m._active = None
        begin(m, 0, "mask", 1)
    with torch.inference_mode():
        after, expected = cached.predict(batch), fresh.predict(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    for a, b in zip(after, expected, strict=True):
        assert torch.equal(a > 0.5, b > 0.5)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
