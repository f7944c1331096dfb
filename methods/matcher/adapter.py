"""The ``matcher`` adapter (``refseg_bench.methods.base.Method``).

Per episode, as the official ``Matcher.predict``: references and query at 518 x 518,
DINOv2 patch features, bidirectional Hungarian matching, prompt points (matched points or
k-means++ centres), sampled point subsets, SAM proposals (plus the dense grid for
COCO / LVIS), instance-level scores and merging. Image-only work (DINOv2 features, SAM
embeddings, dense proposals) is cached across episodes by image content. Random numbers
come from per-unit streams replayed in episode order (see ``MatcherOptions.rng``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from refseg_bench.episodes import Episode
from refseg_bench.methods.base import Method, Unit
from refseg_bench.methods.matcher import matching, prep, proposals, scoring
from refseg_bench.methods.matcher.settings import (
    MatcherOptions,
    Setting,
    choose_models,
    resolve_setting,
)
from refseg_bench.notices import say


class Matcher(Method):
    """Matcher (Liu et al., ICLR 2024): training-free one-shot segmentation by matching
    DINOv2 features and prompting SAM. Options: :class:`MatcherOptions`."""

    name: ClassVar[str] = "matcher"
    Options = MatcherOptions

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.sam = self.dinov2 = None
        self.setting_name, self.setting = None, None
        self.streams: matching.Streams | None = None
        self.counts = {"episodes": 0, "no_proposal": 0, "stream_breaks": 0}
        self._next_index = 0
        self.settings_used: dict[str, dict] = {}

    # --- set-up -----------------------------------------------------------------------------
    def setup(self, device: torch.device, dataset=None) -> None:
        from refseg_bench.methods.matcher.build import build_models
        from refseg_bench.models.cache import EmbeddingCache

        self.device = torch.device(device)
        self.choice, self.spec = choose_models(self.opts)
        self.sam, self.dinov2 = build_models(self.spec, self.device, self.opts.attention)
        self.cache = EmbeddingCache(max_bytes=self.opts.cache_mb << 20)
        self.emd = scoring.EmdPool(self.opts.emd_workers)
        self.dataset_name = dataset.name if dataset is not None else None

    def begin_unit(self, unit: Unit) -> None:
        """Choose the setting for this dataset and shot; restart the random streams."""
        super().begin_unit(unit)
        self.use_setting(self.opts.setting, unit.dataset.name, unit.shot)
        self.start_streams(unit.seed)

    def use_setting(self, name: str, dataset: str, shot: int) -> None:
        self.setting_name, self.setting = resolve_setting(name, dataset, shot,
                                                          self.opts.setting_overrides)
        self.settings_used[self.setting_name] = asdict(self.setting)

    def start_streams(self, seed: int) -> None:
        """Fresh streams seeded like the official run (``random.seed(0)`` at import,
        ``fix_randseed(0)``, then the DataLoader's draw), ``seed`` in place of 0."""
        self.seed = seed
        self.streams = matching.Streams.seeded(seed, loader_draw=True)
        self._next_index = 0

    def _episode_streams(self, episode: Episode) -> matching.Streams:
        if self.opts.rng == "episode":
            state = np.random.SeedSequence([self.seed, episode.spec.index]).generate_state(1)
            return matching.Streams.seeded(int(state[0]), loader_draw=False)
        if episode.spec.index != self._next_index:
            if self.counts["stream_breaks"] == 0:
                say(self.name, f"episode {episode.spec.index} follows episode "
                               f"{self._next_index - 1}: a resumed or sharded unit, so the "
                               "random stream is not the one of an uninterrupted official run "
                               "(use rng: episode for order-independent results)")
            self.counts["stream_breaks"] += 1
        self._next_index = episode.spec.index + 1
        return self.streams

    # --- cached image-only work -------------------------------------------------------------
    def _encoder(self, module, tag: str):
        from refseg_bench.models.cache import EncoderId
        from refseg_bench.models.provenance import weights_info

        name = f"{weights_info(module).model}|matcher:{tag}"
        return EncoderId.of(module, self.setting.img_size, model=name)

    def features(self, image: np.ndarray) -> torch.Tensor:
        """``(g*g, C)`` L2-normalised pre-norm DINOv2 patch tokens of ``image`` at 518."""
        def compute(im):
            x = prep.dinov2_input(prep.resized_tensor(im, self.setting.img_size))
            out = self.dinov2.forward_features(x[None].to(self.device))["x_prenorm"][:, 1:]
            return F.normalize(out.reshape(-1, self.dinov2.embed_dim), dim=1, p=2)

        enc = self._encoder(self.dinov2, f"prenorm/{self.opts.attention}")
        return self.cache.get_or_compute(image, enc, compute)

    def sam_embedding(self, image: np.ndarray) -> torch.Tensor:
        """``(1, C, h, w)`` SAM embedding of the 518 target as ``Matcher.set_target`` feeds it."""
        from refseg_bench.models.sam import encode_sam_images

        def compute(im):
            return encode_sam_images(self.sam, [prep.sam_image(
                prep.resized_tensor(im, self.setting.img_size))])[0]

        return self.cache.get_or_compute(image, self._encoder(self.sam, "target"), compute)[None]

    def dense(self, image: np.ndarray, embedding: torch.Tensor) -> proposals.Proposals:
        """The dense-grid proposals of ``image`` (cached: they depend on nothing else)."""
        s = self.setting
        tag = (f"dense/{s.points_per_side}/{s.points_per_batch}/{s.pred_iou_thresh}/"
               f"{s.stability_score_thresh}/{s.dense_multimask_output}/{s.multimask_output}")

        def compute(_):
            p = proposals.dense_proposals(self.sam, embedding, s)
            return {"packed": torch.from_numpy(p.packed), "iou": p.iou, "boxes": p.boxes}

        v = self.cache.get_or_compute(image, self._encoder(self.sam, tag), compute)
        return proposals.Proposals(v["packed"].numpy(), v["iou"], v["boxes"])

    # --- references -------------------------------------------------------------------------
    def reference_masks(self, episode: Episode) -> torch.Tensor:
        """``(k, S, S)`` float 0/1 reference masks at 518 (nearest-resized)."""
        size = self.setting.img_size
        return torch.stack([prep.resized_mask(self._reference_mask(im, a), size)
                            for im, a in zip(episode.support_images, episode.annotations,
                                             strict=True)])

    def _reference_mask(self, image: np.ndarray, annotation) -> np.ndarray:
        if annotation.kind == "mask" or self.opts.weak_reference == "raster":
            return np.asarray(annotation.raster, dtype=bool)
        from refseg_bench.methods.persam.references import reference_mask
        from refseg_bench.methods.persam.sam_ops import image_state
        from refseg_bench.models.cache import EncoderId
        from refseg_bench.models.sam import encode_sam_images

        enc = EncoderId.of(self.sam, self.sam.image_encoder.img_size)
        emb = self.cache.get_or_compute(image, enc, lambda im: encode_sam_images(self.sam, [im])[0])
        return reference_mask(self.sam, image_state(self.sam, emb[None].to(self.device),
                                                    image.shape[:2]), annotation)

    # --- prediction -------------------------------------------------------------------------
    def _require_unit(self) -> None:
        if self.sam is None:
            raise RuntimeError("Matcher: call setup(device, dataset) before predict()")
        if self.setting is None or self.streams is None:
            raise RuntimeError("Matcher.predict before begin_unit: the runner announces each "
                               "unit first (it picks the setting and restarts the streams)")

    @torch.no_grad()
    def predict(self, batch) -> list[torch.Tensor]:
        """One ``(H, W)`` bool mask per episode at the query's original size."""
        return [prep.output_mask(self.segment(ep), ep.query_size) for ep in batch]

    @torch.no_grad()
    def segment(self, episode: Episode) -> torch.Tensor:
        """The official prediction: ``(S, S)`` bool at 518 x 518."""
        self._require_unit()
        s, streams = self.setting, self._episode_streams(episode)
        self.counts["episodes"] += 1
        pool = prep.reference_pool(self.reference_masks(episode).to(self.device))
        refs = torch.cat([self.features(im) for im in episode.support_images])
        matches = matching.bidirectional_match(refs, self.features(episode.query_image), pool,
                                               s.img_size // prep.PATCH, s.img_size, s.use_box)
        points = matches.points if s.use_points_or_centers else \
            matching.cluster_centres(matches.points, s.num_centers, streams.torch)
        prompt_sets = matching.sample_prompts(points, s.sample_range, s.max_sample_iterations,
                                              streams.py)
        embedding = self.sam_embedding(episode.query_image).to(self.device)
        props = proposals.prompt_proposals(self.sam, embedding, prompt_sets, matches.box, s)
        if s.use_dense_mask:
            props = proposals.Proposals.cat([self.dense(episode.query_image, embedding), props])
        props = proposals.non_max_suppression(props, s.box_nms_thresh)
        if len(props) == 0:
            # The official code stops here (torch.cat of an empty list); we predict nothing.
            self.counts["no_proposal"] += 1
            return torch.zeros(s.img_size, s.img_size, dtype=torch.bool)
        cost_ref = matches.cost[pool.bool()].cpu().numpy()
        chosen = scoring.choose(props, matches.points, cost_ref, s, self.emd)
        return torch.from_numpy(props.masks(chosen).any(axis=0))

    # --- provenance -------------------------------------------------------------------------
    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info
        from refseg_bench.trust import combine

        if self.sam is None:
            raise RuntimeError("Matcher: describe() needs setup() first")
        sam, dino = weights_info(self.sam), weights_info(self.dinov2)
        return {
            "model": f"matcher/{dino.model}+{sam.model}", "method": self.name,
            "weights": combine(sam.weights, dino.weights),
            "sam": sam.to_record(), "dinov2": dino.to_record(),
            "size": self.choice.name, "size_reason": self.choice.reason,
            "model_spec": asdict(self.spec), "settings_used": self.settings_used,
            "counts": dict(self.counts),
            "emd": {"solved": self.emd.solved, "requested": self.emd.requested},
        }


def official_setting(name: str) -> Setting:
    """The setting of ``scripts/<name>.sh`` (for tests and benchmarks)."""
    return resolve_setting(name, "", 1, {})[1]
