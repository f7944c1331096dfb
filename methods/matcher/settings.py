"""Matcher's per-dataset settings and the adapter's options.

Every value of :class:`Setting` is a flag of the official ``main_oss.py`` (same name, same
default); the named settings are the official ``scripts/<name>.sh`` files of
aim-uofa/Matcher at ``d59b6c7`` (the 5-shot scripts differ from the 1-shot ones only in
``num_merging_mask``). ``setting: auto`` picks one by dataset and shot (:func:`auto_setting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from refseg_bench.options import parse_options
from refseg_bench.presets import SizeChoice, choose_size, preset_section


@dataclass(frozen=True)
class Setting:
    """One run configuration of the official code (flags of ``main_oss.py``).

    Proposal generator: ``points_per_side`` (dense grid, used when ``use_dense_mask``),
    ``pred_iou_thresh`` / ``stability_score_thresh`` (dense masks), ``iou_filter`` /
    ``sel_stability_score_thresh`` (masks of sampled prompts), ``box_nms_thresh``,
    ``output_layer`` (3: keep all three multimask outputs of sampled prompts),
    ``dense_multimask_output`` and ``multimask_output`` (0/1). Matcher: ``num_centers``
    (k-means++ centres when not ``use_points_or_centers``), ``use_box``, ``sample_range``
    (subset sizes, inclusive), ``max_sample_iterations``, score weights ``alpha`` /
    ``beta`` / ``exp``, metric filters ``emd_filter`` / ``purity_filter`` /
    ``coverage_filter`` (0 = off), ``use_score_filter`` with ``deep_score_filter`` and
    ``deep_score_norm_filter`` (else top-k with ``topk_scores_threshold``),
    ``num_merging_mask``. ``img_size``: the square input (518: a 37 x 37 DINOv2 grid).
    """

    img_size: int = 518
    points_per_side: int = 64
    points_per_batch: int = 64  # build_matcher_oss's fixed value
    pred_iou_thresh: float = 0.88
    sel_stability_score_thresh: float = 0.0
    stability_score_thresh: float = 0.95
    iou_filter: float = 0.0
    box_nms_thresh: float = 1.0
    output_layer: int = 3
    dense_multimask_output: int = 0
    use_dense_mask: int = 0
    multimask_output: int = 0
    num_centers: int = 8
    use_box: bool = False
    use_points_or_centers: bool = False
    sample_range: tuple[int, int] = (4, 6)
    max_sample_iterations: int = 30
    alpha: float = 1.0
    beta: float = 0.0
    exp: float = 0.0
    emd_filter: float = 0.0
    purity_filter: float = 0.0
    coverage_filter: float = 0.0
    use_score_filter: bool = False
    deep_score_norm_filter: float = 0.1
    deep_score_filter: float = 0.33
    topk_scores_threshold: float = 0.7
    num_merging_mask: int = 10

    def __post_init__(self) -> None:
        lo, hi = self.sample_range
        if not 1 <= lo <= hi:
            raise ValueError(f"sample_range must be (lo, hi) with 1 <= lo <= hi; got "
                             f"{self.sample_range}")
        if self.img_size % 14:
            raise ValueError(f"img_size must be a multiple of DINOv2's patch 14; got "
                             f"{self.img_size}")
        if self.num_merging_mask < 1 or self.num_centers < 1 or self.points_per_batch < 1:
            raise ValueError("num_merging_mask, num_centers and points_per_batch must be >= 1")

    @property
    def score_filter(self) -> dict:
        """The official ``score_filter_cfg`` dict (``build_matcher_oss``)."""
        return {"emd": self.emd_filter, "purity": self.purity_filter,
                "coverage": self.coverage_filter, "score_filter": self.use_score_filter,
                "score": self.deep_score_filter, "score_norm": self.deep_score_norm_filter,
                "topk_scores_threshold": self.topk_scores_threshold}


_COCO = dict(max_sample_iterations=64, box_nms_thresh=0.65, sample_range=(1, 6),
             topk_scores_threshold=0.0, use_dense_mask=1, use_points_or_centers=True,
             purity_filter=0.02, iou_filter=0.85, multimask_output=1,
             sel_stability_score_thresh=0.90, use_score_filter=True, alpha=1.0, beta=0.0,
             exp=0.0, num_merging_mask=9)
_FSS = dict(max_sample_iterations=30, sample_range=(4, 6), multimask_output=0, alpha=0.8,
            beta=0.2, exp=1.0, num_merging_mask=10)
_PART = dict(max_sample_iterations=128, sample_range=(3, 6), use_box=True,
             use_points_or_centers=True, coverage_filter=0.3, alpha=0.5, beta=0.5, exp=0.0,
             num_merging_mask=5)

# scripts/<name>.sh of the official repository, flag for flag.
SETTINGS: dict[str, Setting] = {
    "coco": Setting(**_COCO),
    "coco_5shot": Setting(**{**_COCO, "num_merging_mask": 5}),
    "lvis": Setting(**_COCO),
    "lvis_5shot": Setting(**{**_COCO, "num_merging_mask": 5}),
    "fss": Setting(**_FSS),
    "fss_5shot": Setting(**{**_FSS, "num_merging_mask": 5}),
    "pascal_part": Setting(**_PART),
    "paco_part": Setting(**_PART),
}
# Datasets with a script of their own; every other dataset takes the FSS-1000 setting
# (one object per image, no dense proposals) unless `setting` names one.
_BY_DATASET = {"coco20i": "coco", "lvis92i": "lvis", "fss1000": "fss", "pascal5i": "coco"}


def auto_setting(dataset: str, shot: int) -> str:
    """The official script for ``dataset`` at ``shot``: its 5-shot script whenever there is
    more than one reference (the scripts exist for 1 and 5 shots; they differ only in
    ``num_merging_mask``), the FSS-1000 script for datasets without a script."""
    base = _BY_DATASET.get(dataset, "fss")
    multi = f"{base}_5shot"
    return multi if shot > 1 and multi in SETTINGS else base


def resolve_setting(name: str, dataset: str, shot: int, overrides: dict) -> tuple[str, Setting]:
    """(name, Setting) for ``name`` (``auto`` or a key of :data:`SETTINGS`), with
    ``overrides`` (official flag names) applied on top."""
    from refseg_bench.errors import ConfigError

    chosen = auto_setting(dataset, shot) if name == "auto" else name
    if chosen not in SETTINGS:
        raise ConfigError(f"matcher setting must be 'auto' or one of {sorted(SETTINGS)}; "
                          f"got {name!r}")
    base = SETTINGS[chosen]
    if not overrides:
        return chosen, base
    merged = parse_options(Setting, {**base.__dict__, **overrides},
                           "matcher method_args.setting_overrides")
    return chosen, replace(merged)


# --- models -------------------------------------------------------------------------------

DEFAULT_PRESETS = {
    "real": {"model": {"sam": "vit_h", "sam_checkpoint": "sam_vit_h", "sam_image_size": 1024,
                       "dinov2": "vitl14", "dinov2_checkpoint": "dinov2_vitl14"}},
    "tiny": {"model": {"sam": "tiny", "sam_checkpoint": None, "sam_image_size": 256,
                       "dinov2": "tiny", "dinov2_checkpoint": None,
                       "sam_logit_scale": 400.0, "sam_iou_offset": 0.85}},
}


@dataclass(frozen=True)
class ModelSpec:
    """SAM ``sam`` (variant) from ``sam_checkpoint`` at ``sam_image_size`` and DINOv2
    ``dinov2`` from ``dinov2_checkpoint`` (catalogue names or paths; None = random weights
    drawn from ``init_seed``).

    ``sam_logit_scale`` / ``sam_iou_offset`` calibrate a *random* SAM stand-in, as weights:
    the mask hypernetworks' last layers are multiplied by the scale (mask logits x scale)
    and the offset is added to the IoU head's last bias. A random decoder's logits span
    about +-0.5 and its IoU guesses sit near 0, so no proposal would pass COCO's filters
    (IoU > 0.85/0.88, stability >= 0.9/0.95) and the official code would stop on an empty
    list. Both must be neutral (1, 0) with a checkpoint.
    """

    sam: str = "vit_h"
    sam_checkpoint: str | None = "sam_vit_h"
    sam_image_size: int = 1024
    dinov2: str = "vitl14"
    dinov2_checkpoint: str | None = "dinov2_vitl14"
    init_seed: int = 0
    sam_logit_scale: float = 1.0
    sam_iou_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.sam_checkpoint is not None and (self.sam_logit_scale, self.sam_iou_offset) \
                != (1.0, 0.0):
            raise ValueError("sam_logit_scale and sam_iou_offset calibrate a random SAM; "
                             "with sam_checkpoint set they must be 1 and 0")


@dataclass(frozen=True)
class MatcherOptions:
    """Options of the ``matcher`` adapter (see ``configs/methods/matcher.yaml``).

    ``setting`` / ``setting_overrides``: the official script and flag overrides.
    ``rng``: ``stream`` replays the official RNG use (Python ``random`` and torch's CPU
    generator seeded with the unit seed at the start of each unit, one torch draw for the
    official DataLoader start, consumed in episode order); ``episode`` seeds both from
    (unit seed, episode index) so results do not depend on order, resume or sharding.
    ``weak_reference``: how a box / point / scribble reference becomes Matcher's reference
    mask (``sam``: SAM prompted with the annotation geometry; ``raster``: the annotation's
    raster as is). ``attention``: DINOv2 attention math (``explicit``: the official code's
    path without xFormers; ``sdpa``: fused kernel). ``emd_workers``: threads for exact
    EMD; ``cache_mb``: cache of image-only work (features, embeddings, dense proposals).
    """

    size: str = "auto"
    presets: dict = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    model: dict = field(default_factory=dict)
    setting: str = "auto"
    setting_overrides: dict = field(default_factory=dict)
    rng: Literal["stream", "episode"] = "stream"
    weak_reference: Literal["sam", "raster"] = "sam"
    attention: Literal["explicit", "sdpa"] = "explicit"
    emd_workers: int = 2
    cache_mb: int = 2048

    def __post_init__(self) -> None:
        if self.emd_workers < 1 or self.cache_mb < 0:
            raise ValueError(f"emd_workers must be >= 1 and cache_mb >= 0; got "
                             f"{self.emd_workers} and {self.cache_mb}")


def choose_models(opts: MatcherOptions) -> tuple[SizeChoice, ModelSpec]:
    """The preset taken by the size rule and its model spec (``model`` overrides applied)."""
    real = preset_section(opts.presets, "real", "model", ModelSpec, opts.model, "matcher") \
        if opts.size in ("auto", "real") else None
    refs = [real.sam_checkpoint, real.dinov2_checkpoint] if real else [None]
    choice = choose_size(opts.size, "matcher", refs)
    return choice, preset_section(opts.presets, choice.name, "model", ModelSpec, opts.model,
                                  "matcher")
