"""The VRP-SAM method adapter: per-fold trained encoders in front of a frozen SAM.

The runner announces each unit's fold through ``begin_unit``; the adapter then loads that
fold's encoder by the shared rule of :mod:`refseg_bench.trained.weights` (untrained, an
official-format ``checkpoint``, or the one trained by this harness, trained first when
missing). ``predict`` never looks at episode fields to choose weights.

k-shot: each support gives its own 50 tokens; the k prompt sets are concatenated into one
sparse prompt of 50 k tokens (the official ``predict_mask_nshot``). Training is 1-shot.

A support's frozen backbone features depend on nothing but the support image, its
annotation and the backbone, and a query's on the query image and the backbone, so at
evaluation they are kept in caches keyed by that content (``support_cache_mb``,
``image_cache_mb``; 0 turns one off). The backbone up to layer3 (the trunk) is the same
for an image used as a query and as a support: it is cached per image, so each distinct
image goes through it once; the supports (queries) of a batch not seen before go through
the rest together, once each, like the query embeddings through the embedding cache.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import torch

from refseg_bench.methods.base import Method, Unit
from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam.inputs import episode_tensors, logits_to_size
from refseg_bench.methods.vrpsam.settings import VRPSAMOptions, choose_preset
from refseg_bench.models.reference_cache import module_sha256
from refseg_bench.notices import say
from refseg_bench.trained import weights as fold_weights
from refseg_bench.trained.store import CheckpointKey
from refseg_bench.trust import combine


class VRPSAM(Method):
    """VRP-SAM (Sun et al., CVPR 2024): visual reference prompts for a frozen SAM."""

    name = "vrpsam"
    Options = VRPSAMOptions

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.size, self.preset, self.size_reason = choose_preset(self.opts)
        self.net = None
        self.dataset = None
        self._initial_state: dict | None = None
        self._active: tuple[int, str] | None = None
        self.loaded: dict[int, fold_weights.FoldWeights] = {}
        self.support_cache = self.image_cache = None
        self._support_state: str | None = None  # what cached backbone features depend on

    # --- set-up ---------------------------------------------------------------------------
    def setup(self, device: torch.device, dataset) -> None:
        from refseg_bench.methods.vrpsam.build import build_net

        super().setup(device, dataset)
        self.dataset = dataset
        from refseg_bench.models.reference_cache import ReferenceCache

        if self.net is None or self.net.device != torch.device(device):
            say("vrpsam", f"{self.size} preset ({self.size_reason})")
            self.net = build_net(self.preset.model, torch.device(device))
            self._initial_state = copy.deepcopy(self.net.encoder.state_dict())
        self.support_cache = ReferenceCache(max_bytes=self.opts.support_cache_mb << 20)
        self.image_cache = ReferenceCache(max_bytes=self.opts.image_cache_mb << 20)
        self._active = None

    def _require_setup(self) -> None:
        if self.net is None:
            raise RuntimeError("VRPSAM.setup(device, dataset) must be called before predict/fit")

    def checkpoint_key(self, dataset, fold: int, annotation: str) -> CheckpointKey:
        m = self.preset.model
        tag = (f"{m.backbone}_{m.sam}_{annotation}_{self.preset.train.shot}shot_"
               f"{m.image_size}px")
        return CheckpointKey(self.name, dataset.name, fold, tag)

    def checkpoint_directory(self, dataset, fold: int, annotation: str) -> Path:
        return self.checkpoint_key(dataset, fold, annotation).directory(self.opts.checkpoint_dir)

    def training_info(self, dataset, fold: int, annotation: str) -> dict:
        """What a trained checkpoint depends on (stored in ``train.json`` and compared on
        resume and load): the key, recipe, model spec and identities of the frozen models."""
        from refseg_bench.methods.vrpsam.fit import module_fingerprint
        from refseg_bench.models.provenance import weights_info

        sam_info = weights_info(self.net.sam)
        return {
            "key": self.checkpoint_key(dataset, fold, annotation).to_dict(),
            "settings": self.preset.train.to_dict(),
            "model": asdict(self.preset.model),
            "sam_identity": sam_info.sha256 or module_fingerprint(self.net.sam),
        }

    # --- training -------------------------------------------------------------------------
    def fit(self, dataset, fold: int, *, annotation: str, device: torch.device,
            progress: bool = True) -> dict:
        """Meta-train the encoder on ``fold``'s base classes of the base-only view of
        ``dataset`` (resuming if possible) and write its checkpoint; returns where it is
        and how training went."""
        from refseg_bench.methods.vrpsam.fit import VRPTrainJob
        from refseg_bench.trained.loop import fit

        if self.net is None or self.net.device != torch.device(device):
            self.setup(device, dataset)
        directory = self.checkpoint_directory(dataset, fold, annotation)
        self.net.encoder.load_state_dict(self._initial_state)
        self._active = None
        job = VRPTrainJob(self.net, dataset.base_only_training(), fold, annotation,
                          self.preset.train, self.opts.train_workers)
        with torch.inference_mode(False), torch.enable_grad():
            result = fit(job, directory, self.training_info(dataset, fold, annotation),
                         show_progress=progress)
        return result.report()

    # --- per-fold weights -----------------------------------------------------------------
    def begin_unit(self, unit: Unit) -> None:
        """Load the encoder of ``unit.fold`` (training it first when missing and allowed)."""
        super().begin_unit(unit)
        self._require_setup()
        self._activate(unit.fold, unit.annotation)

    def _activate(self, fold: int, annotation: str) -> None:
        if self._active == (fold, annotation):
            return
        enc = self.net.encoder
        self.loaded[fold] = fold_weights.resolve(self.opts, fold_weights.TrainedFold(
            method=self.name, fold=fold, annotation=annotation, dataset=self.dataset.name,
            directory=self.checkpoint_directory(self.dataset, fold, annotation),
            weights_file=store.ENCODER_FILE,
            expected_info=self.training_info(self.dataset, fold, annotation),
            load=lambda path: store.load_encoder(enc, path),
            reset=lambda: enc.load_state_dict(self._initial_state),
            train=lambda: self.fit(self.dataset, fold, annotation=annotation,
                                   device=self.net.device)))
        enc.eval()
        self._active = (fold, annotation)
        self._support_state = self._backbone_state()
        # The learnable part's one-sided outputs are cached under this fold's weights.
        self._prompt_state = "|".join(module_sha256(m)
                                      for m in enc.learnable_modules().values())

    def _backbone_state(self) -> str:
        """What a support's frozen features depend on besides the support itself: the
        backbone weights (a checkpoint may carry its own), input size and device."""
        from torch import nn

        from refseg_bench.methods.vrpsam.encoder import BACKBONE_LAYERS
        from refseg_bench.models.cache import weights_fingerprint

        enc = self.net.encoder
        backbone = nn.ModuleList([getattr(enc, name) for name in BACKBONE_LAYERS])
        return f"{weights_fingerprint(backbone)}|{self.net.image_size}|{self.net.device}"

    def _trunks(self, digests: list[str], stack) -> list[dict]:
        """Per image (by its ``image_sha256`` digest), ``{"mid": (1, C2 + C3, h, w)}``, the
        backbone trunk shared by its uses as a query and as a support: from the image
        cache, the others computed together from ``stack(positions)`` (their inputs)."""
        keys = [f"vrpsam/trunk|{self._support_state}|{d}" for d in digests]
        return self.image_cache.fill(keys, lambda todo: {"mid": self.net.encoder.trunk(
            stack(todo))})

    def support_features(self, episodes, tensors) -> list:
        """Per shot, the batch's :class:`SupportFeatures`: each support image's trunk from
        the image cache, the mask, masked layer4 and learnable support side
        (:class:`SupportPrompt`, under the fold's weights) of supports seen before from
        the support cache (keyed by image and annotation), the others computed together,
        each distinct support once."""
        from refseg_bench.methods.vrpsam.encoder import (
            SupportFeatures,
            SupportPrompt,
            location_norms,
        )
        from refseg_bench.models.cache import image_sha256
        from refseg_bench.models.reference_cache import annotation_sha256

        k, n = tensors.supports.shape[1], len(episodes)
        where = [(b, i) for i in range(k) for b in range(n)]
        digests = [image_sha256(episodes[b].support_images[i]) for b, i in where]
        trunks = self._trunks(digests, lambda t: torch.stack([tensors.supports[where[j]]
                                                              for j in t]))
        keys = [f"vrpsam/support|{self._support_state}|{d}|"
                f"{annotation_sha256(episodes[b].annotations[i])}"
                for d, (b, i) in zip(digests, where, strict=True)]

        def compute(todo: list[int]) -> dict:
            feats = self.net.encoder.support_from_trunk(
                torch.cat([trunks[j]["mid"] for j in todo]),
                torch.stack([tensors.masks[where[j]] for j in todo]))
            return {"mask": feats.mask, "high": feats.high,  # mid: the trunk, kept once
                    "norm": location_norms(feats.high, feats.mask)}

        found = self.support_cache.fill(keys, compute)
        prompts = self.support_cache.fill(
            [f"vrpsam/prompt|{self._prompt_state}|{key}" for key in keys],
            lambda todo: self._prompt_entry(self.net.encoder.support_prompt(
                torch.cat([trunks[j]["mid"] for j in todo]),
                torch.cat([found[j]["mask"] for j in todo]))))

        def shot(i: int) -> SupportFeatures:
            rows = range(i * n, (i + 1) * n)
            return SupportFeatures(
                mid=torch.cat([trunks[j]["mid"] for j in rows]),
                mask=torch.cat([found[j]["mask"] for j in rows]),
                high=torch.cat([found[j]["high"] for j in rows]),
                high_norm=torch.cat([found[j]["norm"] for j in rows]),
                prompt=SupportPrompt(torch.cat([prompts[j]["prototype"] for j in rows]),
                                     torch.cat([prompts[j]["tokens"] for j in rows])))

        return [shot(i) for i in range(k)]

    @staticmethod
    def _prompt_entry(prompt) -> dict:
        """A ``SupportPrompt`` as cached: the prototype untiled ``(B, D, 1, 1)``."""
        return {"prototype": prompt.prototype[:, :, :1, :1], "tokens": prompt.tokens}

    def query_features(self, digests: list[str], tensors):
        """The batch's :class:`QueryFeatures`: each image's (``digests``: the queries'
        ``image_sha256``) trunk, layer4 and reduced mid features from the image cache, the
        others computed together, each distinct image once."""
        from refseg_bench.methods.vrpsam.encoder import QueryFeatures, location_norms

        trunks = self._trunks(digests, lambda t: tensors.query[t])
        keys = [f"vrpsam/query4|{self._support_state}|{d}" for d in digests]

        def layer4(todo: list[int]) -> dict:
            high = self.net.encoder.query_high(torch.cat([trunks[j]["mid"] for j in todo]))
            return {"high": high, "norm": location_norms(high)}

        highs = self.image_cache.fill(keys, layer4)
        downs = self.image_cache.fill(
            [f"vrpsam/query-down|{self._prompt_state}|{d}" for d in digests],
            lambda todo: {"down": self.net.encoder.downsample_query(
                torch.cat([trunks[j]["mid"] for j in todo]))})
        return QueryFeatures(torch.cat([t["mid"] for t in trunks]),
                             torch.cat([h["high"] for h in highs]),
                             torch.cat([d["down"] for d in downs]),
                             torch.cat([h["norm"] for h in highs]))

    def decoder_side(self, digests: list[str], images: list):
        """The batch's ``DecoderImageSide`` (SAM's mask decoder on the query ``images``
        alone) from the image cache, the others computed together, each distinct image
        once."""
        from refseg_bench.methods.vrpsam.sam_head import DecoderImageSide

        keys = [f"vrpsam/decoder|{self.net.encoder_id.key(d)}" for d in digests]
        found = self.image_cache.fill(keys, lambda todo: vars(self.net.decoder_side(
            [images[j] for j in todo])))
        return DecoderImageSide.cat(found)

    # --- inference ------------------------------------------------------------------------
    def predict(self, batch) -> list[torch.Tensor]:
        """Foreground probability ``(H, W)`` per episode at the query's original size."""
        from refseg_bench.models.cache import image_sha256

        self._require_setup()
        if self._active is None:
            raise RuntimeError("VRPSAM.predict before begin_unit: the runner announces each "
                               "unit (fold) first, which loads that fold's encoder")
        out: list[torch.Tensor] = []
        step = self.opts.batch_size
        for start in range(0, len(batch), step):
            episodes = batch.episodes[start:start + step]
            tensors = episode_tensors(episodes, self.net.image_size).to(self.net.device)
            images = [e.query_image for e in episodes]
            digests = [image_sha256(im) for im in images]
            logits = self.net.logits(tensors, images,
                                     self.support_features(episodes, tensors),
                                     self.query_features(digests, tensors),
                                     self.decoder_side(digests, images))
            for logit, size in zip(logits, tensors.sizes, strict=True):
                # the scorer's p > 0.5 is train.py's validation rule (sigmoid > 0.5)
                out.append(logits_to_size(logit[None], size)[0, 0].sigmoid())
        return out

    # --- provenance -----------------------------------------------------------------------
    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info

        m = self.preset.model
        info = {"model": f"vrpsam/{m.backbone}+sam_{m.sam}@{m.image_size}", "size": self.size,
                "size_reason": self.size_reason, "model_spec": asdict(m),
                "train_settings": self.preset.train.to_dict(),
                "k_shot": "prompt sets of the k supports concatenated (50 k sparse tokens)"}
        info.update(fold_weights.summarize(self.loaded))
        if self.net is None:
            info["weights"] = "random"
            return info
        sam, backbone = weights_info(self.net.sam), self.net.backbone_info
        info["sam"] = sam.to_record()
        info["backbone"] = backbone.to_record() if backbone else None
        info["weights"] = combine(sam.weights, backbone.weights if backbone else "random",
                                  info["trained_weights"])
        return info
