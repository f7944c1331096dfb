"""Typed options of the FSS-SAM2 (FSSAM) adapter (``configs/methods/fss_sam2.yaml``).

Two presets, chosen by the shared ``size`` rule (:mod:`refseg_bench.presets`): ``real``
(SAM 2.0 Hiera-S at 512 and DINOv2 ViT-B/14 at 560 from their official files, the official
recipe) and ``tiny`` (a tiny random SAM 2 and DINOv2 with a CPU budget). ``model`` and
``train`` override the chosen preset key by key. The remaining options switch the method's
own stages; every one is recorded with the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from refseg_bench.presets import choose_size, preset_section
from refseg_bench.trained.weights import TrainedOptions

SAMPLERS = ("file_order", "class_uniform", "official")
# The official loaders' episode rule per dataset (FSSAM util/dataset.py, from BAM/PFENet:
# one pass over the training list everywhere).
OFFICIAL_SAMPLER: dict[str, str] = {}


@dataclass(frozen=True)
class ModelSpec:
    """The networks: SAM 2 variant, version and checkpoint (catalogue name, path, or None
    for random weights), the square input ``image_size`` (512 officially: 32 x 32 image
    features and memories, RoPE grid 32 x 32), the DINOv2 variant and checkpoint and its
    input size ``dino_size`` (560 officially: a 40 x 40 patch grid), and ``init_seed`` for
    every random initialisation (random weights must be identical at training and
    evaluation time).
    """

    sam2: str = "hiera_s"
    sam2_version: str = "2.0"
    sam2_checkpoint: str | None = "sam2_hiera_s"
    image_size: int = 512
    dino: str = "vitb14"
    dino_checkpoint: str | None = "dinov2_vitb14"
    dino_size: int = 560
    init_seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size % 16 or self.dino_size % 14:
            raise ValueError(f"model.image_size must be a multiple of 16 and model.dino_size "
                             f"of 14; got {self.image_size} and {self.dino_size}")


@dataclass(frozen=True)
class TrainSettings:
    """The official recipe as defaults (FSSAM ``config/pascal/small/*.yaml``, ``train.py``):
    AdamW lr 1e-3, weight decay 0, poly decay with power 0.9 per iteration, Dice loss,
    batch 8 in total (2 per GPU x 4), seed 321, and the training augmentation (random scale
    0.9-1.1, rotation +-10 degrees with probability 0.5, 5 x 5 Gaussian blur and horizontal
    flip each with probability 0.5, random ``image_size`` crop). ``epochs`` and
    ``episodes_per_epoch`` are the budget knobs; ``episodes_per_epoch=None``: as many
    episodes as the fold has training queries. ``augment=false`` resizes every image
    straight to ``image_size`` as at evaluation (then frozen features can be cached)."""

    epochs: int = 300
    episodes_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    power: float = 0.9
    seed: int = 321
    shot: int = 1
    sampler: str = "official"
    augment: bool = True
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: tuple[float, float] = (-10.0, 10.0)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"train.sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        if min(self.epochs, self.batch_size, self.shot) < 1:
            raise ValueError("train.epochs, train.batch_size and train.shot must be >= 1")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"train.scale must be (min, max) with 0 < min <= max; got "
                             f"{self.scale}")

    def sampler_for(self, dataset: str) -> str:
        """The episode rule used on ``dataset`` (resolves ``official``)."""
        if self.sampler != "official":
            return self.sampler
        return OFFICIAL_SAMPLER.get(dataset, "file_order")

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("betas", "scale", "rotate"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class Preset:
    model: ModelSpec
    train: TrainSettings


@dataclass(frozen=True)
class FSSAMOptions(TrainedOptions):
    """Everything ``from_config`` accepts (``checkpoint``, ``checkpoint_dir``,
    ``train_if_missing`` and ``untrained`` are the options every trained method shares).

    - ``imr_iterations``, ``imr_version``: iterative memory refinement (official: 3, v1).
    - ``kshot_calibration``: ``all_supports`` (every support's mask builds a prototype; the
      support blocks are averaged and the query block is calibrated) or ``official`` (as the
      released 5-shot code: only the first support's mask reaches the attention, which then
      calibrates the *second* support's block; the official 5-shot weights were trained so).
      Identical at 1 shot.
    - ``weak_support``: under box, point and scribble references, where no support label
      exists: ``sam2`` (the support mask is SAM 2's own prediction for the annotation
      geometry) or ``raster`` (the annotation raster itself, e.g. the filled box).
    - ``precision``: ``auto`` (bf16 autocast on CUDA, fp32 on the CPU), ``fp32``, ``bf16``.
    - ``memory_cache_mb``: support memories kept by support content (image and mask) under
      the fold's weights, in MiB (0: recomputed for every episode).
    """

    size: str = "auto"
    presets: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    imr_iterations: int = 3
    imr_version: Literal["v1", "v2"] = "v1"
    kshot_calibration: Literal["all_supports", "official"] = "all_supports"
    weak_support: Literal["sam2", "raster"] = "sam2"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    batch_size: int = 8
    train_workers: int = 0
    memory_cache_mb: int = 1024

    def __post_init__(self) -> None:
        from refseg_bench.options import check_bounds

        check_bounds(self, ("batch_size",), ("train_workers", "imr_iterations",
                                             "memory_cache_mb"))


def preset(opts: FSSAMOptions, name: str) -> Preset:
    """Preset ``name`` from the options, with ``model`` and ``train`` overrides applied."""
    model = preset_section(opts.presets, name, "model", ModelSpec, opts.model, "fss_sam2")
    train = preset_section(opts.presets, name, "train", TrainSettings, opts.train, "fss_sam2")
    return Preset(model, train)


def choose_preset(opts: FSSAMOptions) -> tuple[str, Preset, str]:
    """(name, preset, reason) by the shared real-or-random rule."""
    real = preset(opts, "real") if "real" in opts.presets else None
    refs = [real.model.sam2_checkpoint, real.model.dino_checkpoint] if real else [None]
    choice = choose_size(opts.size, "fss_sam2", refs)
    return choice.name, preset(opts, choice.name), choice.reason


def with_model(p: Preset, **changes) -> Preset:
    return Preset(replace(p.model, **changes), p.train)
