"""The ``persam`` and ``persam_f`` adapters (``refseg_bench.methods.base.Method``).

Per episode: the reference stage encodes the k references (through the embedding cache),
turns each reference annotation into a mask (:mod:`.references`), pools one target
embedding per reference and averages them; PerSAM-F then fits its two mask weights on the
references (:mod:`.finetune`). That stage depends only on the references, so its result
is kept in a reference cache keyed by their content: like the official scripts, which
prepare each object once and test all its targets, an episode with known references goes
straight to the query. Then the query is encoded and the official PerSAM / PerSAM-F
inference runs (:mod:`.cascade`). The output is the official binary mask, handed over as a bool mask
(one byte per pixel for the scorer to read, no threshold to apply).
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from refseg_bench.episodes import Episode, EpisodeBatch
from refseg_bench.methods.base import Method
from refseg_bench.methods.persam import cascade, finetune, prior
from refseg_bench.methods.persam.loading import (
    PerSAMFOptions,
    PerSAMOptions,
    SamSpec,
    build_spec,
    choose_sam,
)
from refseg_bench.methods.persam.references import reference_mask
from refseg_bench.methods.persam.sam_ops import ImageState, decode, image_state
from refseg_bench.presets import SizeChoice


class _PerSAMBase(Method):
    """Shared set-up: SAM choice and loading, cached encoding, reference handling.
    Options: :class:`~refseg_bench.methods.persam.loading.PerSAMOptions`."""

    name: ClassVar[str]
    Options = PerSAMOptions

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.choice: SizeChoice | None = None
        self.spec: SamSpec | None = None
        self.sam = None

    def setup(self, device: torch.device, dataset=None) -> None:
        from refseg_bench.models.cache import EmbeddingCache, weights_fingerprint
        from refseg_bench.models.reference_cache import ReferenceCache

        self.device = torch.device(device)
        self.choice, self.spec = choose_sam(self.opts, self.name)
        self.sam = build_spec(self.spec, self.device, self.opts.random_seed)
        self.cache = EmbeddingCache(max_bytes=self.opts.cache_mb << 20)
        self.reference_cache = ReferenceCache(max_bytes=self.opts.reference_cache_mb << 20)
        # Everything the reference stage depends on besides the references themselves.
        self._state = json.dumps({"method": self.name, "options": self.options,
                                  "sam": weights_fingerprint(self.sam),
                                  "device": str(self.device)}, sort_keys=True, default=str)

    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info

        if self.sam is None:
            raise RuntimeError(f"{self.name}: describe() needs setup() first (the SAM used "
                               "is only known once its checkpoint has been looked up)")
        info = weights_info(self.sam)
        out = {"model": info.model, "weights": info.weights, "method": self.name,
               "size": self.choice.name, "size_reason": self.choice.reason}
        if info.checkpoint is not None:
            out.update(checkpoint=info.checkpoint, checkpoint_sha256=info.sha256)
        if info.note:
            out["weights_note"] = info.note
        return out

    # ---- encoding -------------------------------------------------------------------
    def encode(self, images: list[np.ndarray]) -> list[ImageState]:
        """Encode ``images`` (each (H, W, 3) uint8) through the cache, at most
        ``encoder_batch`` per encoder forward (an image met twice is encoded once)."""
        from refseg_bench.models.cache import EncoderId
        from refseg_bench.models.sam import encode_sam_images

        if self.sam is None:
            raise RuntimeError(f"{self.name}: call setup(device, dataset) before predict()")
        step = self.opts.encoder_batch
        enc = EncoderId.of(self.sam, self.sam.image_encoder.img_size)
        feats = []
        for i in range(0, len(images), step):
            feats += self.cache.encode_batch(images[i:i + step], enc,
                                             lambda ims: encode_sam_images(self.sam, ims))
        return [image_state(self.sam, f[None].to(self.device), im.shape[:2])
                for f, im in zip(feats, images, strict=True)]

    # ---- references -----------------------------------------------------------------
    def reference_masks(self, states: list[ImageState], episode: Episode) -> list[np.ndarray]:
        return [reference_mask(self.sam, s, a)
                for s, a in zip(states, episode.annotations, strict=True)]

    def target_embedding(self, states: list[ImageState], masks: list[np.ndarray]) -> Tensor:
        """(C,) the per-reference embeddings (``self.pool``) averaged over references."""
        value = self.opts.reference_mask_value
        embs = []
        for s, m in zip(states, masks, strict=True):
            cells = prior.reference_cells(self.sam, m, tuple(s.features.shape[-2:]), value)
            embs.append(self.pool(prior.foreground_features(s.features, cells)))
        return embs[0] if len(embs) == 1 else torch.stack(embs).mean(0)

    @staticmethod
    def pool(fg: Tensor) -> Tensor:
        raise NotImplementedError

    def encode_ahead(self, batch: EpisodeBatch) -> None:
        """Encode the batch's images into the embedding cache, ``encoder_batch`` per
        forward across episodes: every query, and the references of episodes whose
        reference stage is not cached yet. (With ``encoder_batch: 1`` each image is encoded
        alone anyway, when first needed.)"""
        images = [ep.query_image for ep in batch]
        for ep in batch:
            if self._reference_key(ep) not in self.reference_cache:
                images += ep.support_images
        self.encode(images)

    def _reference_key(self, episode: Episode) -> str:
        return self.reference_cache.key(f"{self.name}/reference", self._state,
                                        episode.support_images, episode.annotations)

    def reference_stage(self, episode: Episode) -> dict:
        """The query-independent part of an episode (cached by reference content):
        ``target`` (C,) and, for PerSAM-F, ``weights`` (3,) and ``losses`` (iterations,)."""
        return self.reference_cache.get_or_compute(
            self._reference_key(episode), lambda: self.prepare_references(episode))

    def prepare_references(self, episode: Episode) -> dict:
        refs = self.encode(episode.support_images)
        return {"target": self.target_embedding(refs, self.reference_masks(refs, episode))}

    # ---- prediction -----------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: EpisodeBatch) -> list[Tensor]:
        if self.sam is None:
            raise RuntimeError(f"{self.name}: call setup(device, dataset) before predict()")
        if self.opts.encoder_batch > 1:
            self.encode_ahead(batch)
        return [self.predict_episode(ep).mask for ep in batch]

    def predict_episode(self, episode: Episode) -> cascade.Segmentation:
        raise NotImplementedError


class PerSAM(_PerSAMBase):
    """Training-free PerSAM: mean target embedding, positive + negative point, guided
    first decode, two cascaded refinements."""

    name = "persam"
    pool = staticmethod(prior.mean_embedding)

    def predict_episode(self, episode: Episode) -> cascade.Segmentation:
        target = self.reference_stage(episode)["target"]
        query = self.encode([episode.query_image])[0]
        return cascade.persam_segment(self.sam, query, target)


class PerSAMF(_PerSAMBase):
    """PerSAM-F: PerSAM's prior with a 0.5 max + 0.5 mean embedding and one positive
    point, plus two mask weights fitted on the references (``train_iters`` AdamW steps at
    ``lr``, ``eps``, ``weight_decay``, cosine schedule, Dice + focal). The fit needs
    gradients at test time, so the runner calls ``predict`` outside inference mode."""

    name = "persam_f"
    Options = PerSAMFOptions
    test_time_grad = True
    pool = staticmethod(prior.max_mean_embedding)

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.last_fit: finetune.FitResult | None = None

    def fit_weights(self, states: list[ImageState], masks: list[np.ndarray],
                    target: Tensor) -> finetune.FitResult:
        """Fit the mask weights on the references: each reference's own confidence map
        gives its positive point; its three multimask logits are computed once."""
        logits, targets = [], []
        for s, m in zip(states, masks, strict=True):
            points, labels = prior.select_points(prior.confidence_map(self.sam, s, target),
                                                 negative=False)
            out = decode(self.sam, s, points, labels, multimask_output=True)
            logits.append(out.high_res.flatten(1))
            targets.append(torch.as_tensor(m, dtype=torch.float32,
                                           device=out.high_res.device).reshape(1, -1))
        o = self.opts
        with torch.enable_grad():  # the runner predicts under no_grad (test_time_grad)
            return finetune.fit_mask_weights(logits, targets, o.train_iters, o.lr, o.eps,
                                             o.weight_decay)

    def prepare_references(self, episode: Episode) -> dict:
        refs = self.encode(episode.support_images)
        masks = self.reference_masks(refs, episode)
        target = self.target_embedding(refs, masks)
        fit = self.fit_weights(refs, masks, target)
        return {"target": target, "weights": fit.weights, "losses": torch.tensor(fit.losses)}

    def predict_episode(self, episode: Episode) -> cascade.Segmentation:
        ref = self.reference_stage(episode)
        self.last_fit = finetune.FitResult(ref["weights"], ref["losses"].tolist())
        query = self.encode([episode.query_image])[0]
        return cascade.persam_f_segment(self.sam, query, ref["target"], ref["weights"])
