"""The CAV-SAM method adapter (``refseg_bench.methods.base.Method``).

Per support of an episode: the reference mask (the annotation raster for mask references,
SAM 2's frame-0 mask under box / point / scribble references); DBST's in-between frames
from the reference towards the target; TTGA's neck tuning on the reference and its prompts
on the first half of the generated frames; the pseudo video (reference, generated frames,
target) prompted on frame 0 with the annotation and propagated by SAM 2. The target
frame's foreground probability is the support's answer; k supports give k independent
pseudo videos whose probabilities are averaged (our k-shot rule: the paper does not state
one). After every support the tuned neck and the LoRA are restored, so no episode sees
another's adaptation.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from refseg_bench.episodes import Episode, EpisodeBatch
from refseg_bench.methods.base import Method
from refseg_bench.methods.cavsam import video
from refseg_bench.methods.cavsam.latents import frame_alphas
from refseg_bench.methods.cavsam.settings import CAVSAMOptions, choose_preset, variant
from refseg_bench.methods.cavsam.timing import Stopwatch
from refseg_bench.notices import say
from refseg_bench.trust import combine

K_SHOT_RULE = ("one pseudo video per support (each with its own TTGA), foreground "
               "probabilities averaged over the k supports")


class CAVSAM(Method):
    """CAV-SAM (Wang et al., ICCV 2025): correspondence as video for SAM 2."""

    name = "cavsam"
    Options = CAVSAMOptions
    test_time_grad = True  # LoRA training and neck tuning at test time

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.size, self.preset, self.size_reason = choose_preset(self.opts)
        self.sam2 = None
        self.sd = None
        self.dbst = None
        self.tuner = None
        self.watch = Stopwatch()
        self.last_timings: dict[str, float] = {}
        self.counts = dict.fromkeys(
            ("supports", "reference_mask_from_raster", "ttga_runs",
             "ttga_skipped_empty_reference", "frames_prompted", "ttga_empty_frame_masks",
             "empty_cycle_steps"), 0)

    # --- set-up ---------------------------------------------------------------------------
    def setup(self, device: torch.device, dataset=None) -> None:
        from refseg_bench.methods.cavsam.ttga import NeckTuner
        from refseg_bench.models.sam2_models import build_sam2

        super().setup(device, dataset)
        m, p = self.preset.model, self.preset
        say("cavsam", f"{self.size} preset ({self.size_reason}); {variant(p)}")
        with torch.random.fork_rng(devices=[]):  # random SAM 2 weights, drawn from init_seed
            torch.manual_seed(m.init_seed)
            self.sam2 = build_sam2(m.sam2_variant, m.sam2_version, m.sam2_checkpoint,
                                   m.sam2_image_size, device, video=True)
        self.sam2.requires_grad_(False)
        self.tuner = NeckTuner(self.sam2)
        self.watch = Stopwatch(torch.device(device))
        if p.dbst.generated:
            from refseg_bench.methods.cavsam.dbst import DBST
            from refseg_bench.models.diffusion import build_stable_diffusion

            self.sd = build_stable_diffusion(m.sd_checkpoint, device, resolution=m.sd_resolution,
                                             seed=m.init_seed, architecture=m.sd_architecture)
            self.dbst = DBST(self.sd, p.dbst, self.watch, self.opts.cache_mb << 20)

    def _require_setup(self) -> None:
        if self.sam2 is None:
            raise RuntimeError("CAVSAM.setup(device, dataset) must be called before predict")

    # --- inference ------------------------------------------------------------------------
    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        self._require_setup()
        return [self.predict_episode(ep) for ep in batch]

    def predict_episode(self, episode: Episode) -> torch.Tensor:
        """(H, W) float foreground probability of the query, averaged over the supports."""
        probs = []
        for i in range(episode.shot):
            try:
                probs.append(self.predict_support(episode, i))
            finally:
                self.restore()
        self.last_timings = self.watch.reset()
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)

    def restore(self) -> None:
        """Undo every test-time change: the original neck, the UNet without LoRA."""
        if self.tuner is not None:
            self.tuner.restore()
        if self.dbst is not None:
            self.dbst.restore()

    def predict_support(self, episode: Episode, i: int) -> torch.Tensor:
        p = self.preset
        reference, annotation = episode.support_images[i], episode.annotations[i]
        target = episode.query_image
        self.counts["supports"] += 1
        with self.watch.section("reference"):
            ref_mask = self._reference_mask(reference, annotation)
        generated = []
        if p.dbst.generated:
            prompt = p.dbst.prompt_template.format(
                class_name=episode.class_name.replace("_", " "))
            alphas = frame_alphas(p.dbst.generated, *p.dbst.alpha_range)
            generated = self.dbst.frames(reference, target, prompt, alphas)
        frame_masks = self._align(episode, i, reference, ref_mask, generated)
        return self._propagate(reference, annotation, generated, target, frame_masks)

    def _reference_mask(self, reference: np.ndarray, annotation) -> np.ndarray:
        """(H, W) bool: the mask itself, else SAM 2's frame-0 mask from the annotation's
        geometry; when SAM 2 finds nothing there, the annotation raster (filled box,
        clicked pixels, strokes), so TTGA still has a foreground (counted)."""
        raster = np.asarray(annotation.raster, bool)
        if annotation.kind == "mask":
            return raster
        mask = video.reference_mask(self.sam2, reference, annotation)
        if mask.any():
            return mask
        self.counts["reference_mask_from_raster"] += 1
        return raster

    def _align(self, episode: Episode, i: int, reference, ref_mask, generated) -> dict:
        """TTGA: tune the neck on the reference; the Otsu masks of the frames to prompt."""
        p = self.preset
        if not p.ttga.enabled:
            return {}
        if not ref_mask.any():
            self.counts["ttga_skipped_empty_reference"] += 1
            return {}
        seed = np.random.SeedSequence([episode.spec.seed, i]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(seed))
        with self.watch.section("ttga"):
            report = self.tuner.tune(reference, ref_mask, p.ttga, generator)
            indices = p.ttga.frames_to_prompt(p.dbst.num_frames, p.dbst.generated)
            masks = self.tuner.frame_masks(reference, ref_mask,
                                           [generated[k - 1] for k in indices], p.ttga)
        self.counts["ttga_runs"] += 1
        self.counts["empty_cycle_steps"] += report.empty_cycle_steps
        self.counts["ttga_empty_frame_masks"] += sum(not m.any() for m in masks)
        return dict(zip(indices, masks, strict=True))

    def _propagate(self, reference, annotation, generated, target, frame_masks) -> torch.Tensor:
        from refseg_bench.methods.cavsam.dbst import resize_frame

        size = target.shape[:2]
        frames = [resize_frame(f, size) for f in (reference, *generated, target)]
        with self.watch.section("propagation"):
            state = video.init_video_state(self.sam2, frames)
            video.prompt_reference(self.sam2, state, annotation, reference.shape[:2],
                                   self.opts.reference_prompt)
            self.counts["frames_prompted"] += video.prompt_frames(
                self.sam2, state, frame_masks, self.preset.ttga.prompt)
            return video.last_frame_probability(self.sam2, state)

    # --- provenance -----------------------------------------------------------------------
    def describe(self) -> dict:
        from refseg_bench.models.provenance import weights_info

        p = self.preset
        m = p.model
        sd_part = f"+sd@{m.sd_resolution}" if p.dbst.generated else ""
        info = {"model": f"cavsam/sam{m.sam2_version}-{m.sam2_variant}@{m.sam2_image_size}"
                         f"{sd_part} [{variant(p)}]",
                "size": self.size, "size_reason": self.size_reason,
                "model_spec": asdict(m), "dbst": asdict(p.dbst), "ttga": asdict(p.ttga),
                "frames": p.dbst.generated + 2, "k_shot": K_SHOT_RULE,
                "counts": dict(self.counts)}
        if self.sam2 is None:
            info["weights"] = "random"
            return info
        sam = weights_info(self.sam2)
        info["sam2"] = sam.to_record()
        kinds = [sam.weights]
        if self.sd is not None:
            info["stable_diffusion"] = self.sd.info
            info["dbst_counts"] = dict(self.dbst.counts)
            kinds.append(self.sd.weights)
        info["weights"] = combine(*kinds)
        return info
