"""The FSS-SAM2 (FSSAM) method adapter: per-fold trained SAM 2 memory modules and decoder.

The runner announces each unit's fold through ``begin_unit``; the adapter then loads that
fold's weights by the shared rule of :mod:`refseg_bench.trained.weights` (untrained, an
official-format ``checkpoint``, or the one trained here, trained first when missing).
``predict`` never looks at episode fields to choose weights.

References: ``mask`` episodes carry the support label, used as FSSAM uses its support GT.
Under ``box``, ``point`` and ``scribble`` there is no label; the support mask is then SAM
2's own prediction for the annotation geometry (``weak_support=sam2``) or the annotation
raster (``weak_support=raster``), and everything downstream is unchanged. Training always
uses full support labels, so one checkpoint per fold serves every annotation kind.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch

from refseg_bench.methods.base import Method, Unit, half_as_foreground
from refseg_bench.methods.fss_sam2 import store
from refseg_bench.methods.fss_sam2.inputs import (
    EpisodeTensors,
    foreground,
    label_tensor,
    stack_images,
)
from refseg_bench.methods.fss_sam2.network import Stages
from refseg_bench.methods.fss_sam2.settings import FSSAMOptions, choose_preset
from refseg_bench.models.reference_cache import ReferenceCache
from refseg_bench.notices import say
from refseg_bench.trained import weights as fold_weights
from refseg_bench.trained.store import CheckpointKey
from refseg_bench.trust import combine


class FSSAM(Method):
    """FSSAM (Xu et al., ICML 2025): SAM 2's memory path for few-shot segmentation."""

    name = "fss_sam2"
    Options = FSSAMOptions

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.size, self.preset, self.size_reason = choose_preset(self.opts)
        o = self.opts
        self.stages = Stages(o.imr_iterations, o.imr_version, o.kshot_calibration)
        self.net = None
        self.dataset = None
        self.precision = None
        self._initial: dict | None = None
        self._active: int | None = None
        self.loaded: dict[int, fold_weights.FoldWeights] = {}
        self.weak_counts = {"sam2": 0, "raster_fallback": 0, "raster": 0}

    # --- set-up ---------------------------------------------------------------------------
    def setup(self, device: torch.device, dataset) -> None:
        from refseg_bench.methods.fss_sam2.build import build_net
        from refseg_bench.methods.fss_sam2.frozen import frozen_identity
        from refseg_bench.models.precision import check_precision

        super().setup(device, dataset)
        device = torch.device(device)
        self.dataset = dataset
        self.precision = self.opts.precision if self.opts.precision != "auto" else (
            "bf16" if device.type == "cuda" else "fp32")
        check_precision(self.precision, device)
        if self.net is None or self.net.device != device:
            say("fss_sam2", f"{self.size} preset ({self.size_reason})")
            self.net = build_net(self.preset.model, device, self.stages)
            frozen_identity(self.net.model)  # fixed now, before any training or loading
            self._initial = {name: copy.deepcopy(m.state_dict())
                             for name, m in self.net.model.learnable_modules().items()}
        self._active = None

    def autocast(self):
        from refseg_bench.models.precision import autocast

        return autocast(self.net.device, self.precision)

    def _require_setup(self) -> None:
        if self.net is None:
            raise RuntimeError("FSSAM.setup(device, dataset) must be called before predict/fit")

    def checkpoint_key(self, dataset, fold: int) -> CheckpointKey:
        m = self.preset.model
        tag = (f"sam{m.sam2_version}-{m.sam2}_dino-{m.dino}_{self.preset.train.shot}shot_"
               f"{m.image_size}px")
        return CheckpointKey(self.name, dataset.name, fold, tag)

    def checkpoint_directory(self, dataset, fold: int):
        return self.checkpoint_key(dataset, fold).directory(self.opts.checkpoint_dir)

    def training_info(self, dataset, fold: int) -> dict:
        """What a trained checkpoint depends on (stored in ``train.json``, compared on
        resume and load): the key, recipe, model spec, the stage switches that shape
        training, and the identities of the frozen models."""
        from refseg_bench.methods.fss_sam2.frozen import frozen_identity

        stages = {"imr_iterations": self.stages.imr_iterations,
                  "imr_version": self.stages.imr_version}
        if self.preset.train.shot > 1:
            stages["kshot_calibration"] = self.stages.kshot_calibration
        return {"key": self.checkpoint_key(dataset, fold).to_dict(),
                "settings": self.preset.train.to_dict(), "model": asdict(self.preset.model),
                "stages": stages, "frozen_identity": frozen_identity(self.net.model)}

    # --- training -------------------------------------------------------------------------
    def fit(self, dataset, fold: int, *, annotation: str, device: torch.device,
            progress: bool = True) -> dict:
        """Meta-train on ``fold``'s base classes of the base-only view of ``dataset``
        (resuming if possible) and write the checkpoint. Training reads full support labels
        whatever ``annotation`` is (FSSAM trains on masks), so the checkpoint is shared by
        all annotation kinds."""
        from refseg_bench.methods.fss_sam2.fit import FSSAMTrainJob
        from refseg_bench.trained.loop import fit

        if self.net is None or self.net.device != torch.device(device):
            self.setup(device, dataset)
        self._reset()
        self.net.use_memory_cache(None)  # the weights change at every step
        job = FSSAMTrainJob(self.net, dataset.base_only_training(), fold, self.preset.train,
                            self.autocast, self.opts.train_workers)
        with torch.inference_mode(False), torch.enable_grad():
            result = fit(job, self.checkpoint_directory(dataset, fold),
                         self.training_info(dataset, fold), show_progress=progress)
        return result.report()

    # --- per-fold weights -----------------------------------------------------------------
    def begin_unit(self, unit: Unit) -> None:
        """Load the weights of ``unit.fold`` (training them first when missing and allowed)."""
        super().begin_unit(unit)
        self._require_setup()
        if self._active == unit.fold:
            return
        self.loaded[unit.fold] = fold_weights.resolve(self.opts, fold_weights.TrainedFold(
            method=self.name, fold=unit.fold, annotation=unit.annotation,
            dataset=self.dataset.name,
            directory=self.checkpoint_directory(self.dataset, unit.fold),
            weights_file=store.WEIGHTS_FILE,
            expected_info=self.training_info(self.dataset, unit.fold),
            load=self._load, reset=self._reset,
            train=lambda: self.fit(self.dataset, unit.fold, annotation=unit.annotation,
                                   device=self.net.device)))
        self.net.model.eval()
        self._active = unit.fold
        self.net.use_memory_cache(ReferenceCache(max_bytes=self.opts.memory_cache_mb << 20))

    def _load(self, path) -> None:
        """A whole official-format file (SAM 2 and DINOv2 included): its hash then names the
        frozen features in the cache."""
        self.net.frozen_id = store.load_checkpoint(self.net.model, path)
        self._active = None

    def _reset(self) -> None:
        for name, module in self.net.model.learnable_modules().items():
            module.load_state_dict(self._initial[name])
        self._active = None

    # --- inference ------------------------------------------------------------------------
    def predict(self, batch) -> list[torch.Tensor]:
        """Foreground probability ``(H, W)`` float32 per episode at the query's original
        size: the 512 logits bilinearly upsampled with aligned corners, then the sigmoid
        (FSSAM ``test.py``), an exact 0.5 raised by one ulp (``half_as_foreground``)."""
        self._require_setup()
        if self._active is None:
            raise RuntimeError("FSSAM.predict before begin_unit: the runner announces each "
                               "unit (fold) first, which loads that fold's weights")
        out: list[torch.Tensor] = []
        for start in range(0, len(batch), self.opts.batch_size):
            episodes = batch.episodes[start:start + self.opts.batch_size]
            tensors = self.episode_tensors(episodes)
            with self.autocast():
                logits = self.net.logits(tensors).float()
            for logit, size in zip(logits, tensors.sizes, strict=True):
                up = torch.nn.functional.interpolate(logit[None], size=size, mode="bilinear",
                                                     align_corners=True)
                out.append(half_as_foreground(up[0, 0].sigmoid()))
        return out

    def episode_tensors(self, episodes) -> EpisodeTensors:
        """Images, support masks (labels, or from weak annotations) and cache keys."""
        from refseg_bench.methods.fss_sam2.references import support_masks

        s, device = self.net.image_size, self.net.device
        query, supports = stack_images(episodes, s)
        tensors = EpisodeTensors(query, supports, torch.empty(0), [e.query_size for e in episodes],
                                 [e.query_image for e in episodes],
                                 [im for e in episodes for im in e.support_images]).to(device)
        if all(e.support_masks is not None for e in episodes):
            tensors.masks = torch.stack([torch.stack([foreground(label_tensor(m, s))
                                                      for m in e.support_masks])
                                         for e in episodes]).to(device)
        else:
            with self.autocast():
                tensors.masks = support_masks(self.net, tensors, episodes,
                                              self.opts.weak_support, self.weak_counts)
        return tensors

    # --- provenance -----------------------------------------------------------------------
    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info

        m = self.preset.model
        info = {"model": f"fss_sam2/sam{m.sam2_version}-{m.sam2}@{m.image_size}"
                         f"+dinov2-{m.dino}@{m.dino_size}",
                "size": self.size, "size_reason": self.size_reason, "model_spec": asdict(m),
                "train_settings": self.preset.train.to_dict(), "precision": self.precision,
                "weighted_gap": "masked average pooling of model/FSSAM.py (Weighted_GAP), "
                                "also in the attention, where the release calls an undefined "
                                "self.Weighted_GAP (upstream issue #3)",
                "weak_support_masks": dict(self.weak_counts)}
        info.update(fold_weights.summarize(self.loaded))
        if self.net is None:
            info["weights"] = "random"
            return info
        sam2, dino = weights_info(self.net.sam2), weights_info(self.net.model.dino)
        info["sam2"], info["dino"] = sam2.to_record(), dino.to_record()
        info["weights"] = combine(sam2.weights, dino.weights, info["trained_weights"])
        return info
