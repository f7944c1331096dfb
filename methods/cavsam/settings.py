"""Typed options of the CAV-SAM adapter (``configs/methods/cavsam.yaml``).

Three sections, each with a ``real`` and a ``tiny`` preset entry and key-by-key overrides
(:mod:`refseg_bench.presets`): ``model`` (SAM 2 and Stable Diffusion), ``dbst`` (the
generated frames, with the LoRA and inversion cost knobs) and ``ttga`` (the neck tuning).
Ablations are switches in these sections: ``dbst.enabled``, ``ttga.enabled``,
``dbst.num_frames``; the plain two-frame video is both switched off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from refseg_bench.presets import choose_size, preset_section


@dataclass(frozen=True)
class ModelSpec:
    """SAM 2 (variant, release, checkpoint: catalogue name, path or None for random
    weights, square input size in pixels) and Stable Diffusion (checkpoint: catalogue
    folder name, folder path or None for random weights of ``sd_architecture``: ``tiny`` or
    ``sd2.1-base``; square working resolution in pixels). ``init_seed`` draws every random
    weight."""

    sam2_variant: str = "hiera_t"
    sam2_version: str = "2.0"
    sam2_checkpoint: str | None = "sam2_hiera_t"
    sam2_image_size: int = 1024
    sd_checkpoint: str | None = "sd21_base"
    sd_architecture: Literal["tiny", "sd2.1-base"] = "sd2.1-base"
    sd_resolution: int = 512
    init_seed: int = 0


@dataclass(frozen=True)
class DBSTSpec:
    """The pseudo video's generated frames. ``num_frames`` (Nv) counts the reference and
    the target too, so Nv - 2 frames are generated at alphas evenly spaced over
    ``alpha_range``. The rest is DiffMorpher's recipe and its switches (see the docs)."""

    enabled: bool = True
    num_frames: int = 9
    alpha_range: tuple[float, float] = (0.2, 0.8)
    lora: bool = True
    lora_steps: int = 200
    lora_rank: int = 16
    lora_lr: float = 2e-4
    lora_weight_decay: float = 1e-2
    lora_resize: Literal["short_side", "square"] = "short_side"
    lora_interpolation: Literal["parameters", "deltas"] = "parameters"
    inversion_steps: int = 20
    adain: bool = True
    prompt_template: str = "{class_name}"
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.alpha_range
        if self.num_frames < 2:
            raise ValueError(f"dbst.num_frames counts the reference and the target, so it "
                             f"must be >= 2; got {self.num_frames}")
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"dbst.alpha_range must satisfy 0 <= low <= high <= 1; got "
                             f"{self.alpha_range}")
        if min(self.lora_steps, self.inversion_steps, self.lora_rank) < 1:
            raise ValueError("dbst.lora_steps, inversion_steps and lora_rank must be >= 1")
        if "{class_name}" not in self.prompt_template:
            raise ValueError(f"dbst.prompt_template must contain '{{class_name}}'; got "
                             f"{self.prompt_template!r}")

    @property
    def generated(self) -> int:
        """How many frames DBST generates (0 when switched off)."""
        return self.num_frames - 2 if self.enabled else 0


@dataclass(frozen=True)
class TTGASpec:
    """Test-time tuning of SAM 2's FPN neck and the prompts it gives (see the docs for
    which values come from the paper and which are ours)."""

    enabled: bool = True
    steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 5e-4
    activation: Literal["rescale", "sigmoid"] = "rescale"
    temperature: float = 0.1
    cycle_weight: float = 1.0
    prompt: Literal["box", "mask"] = "box"
    prompt_frames: int | None = None
    rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    translate: float = 0.1
    color_jitter: float = 0.3
    otsu_bins: int = 256

    def __post_init__(self) -> None:
        if self.steps < 1 or self.otsu_bins < 2 or self.temperature <= 0:
            raise ValueError("ttga.steps must be >= 1, ttga.otsu_bins >= 2 and "
                             "ttga.temperature > 0")
        if self.prompt_frames is not None and self.prompt_frames < 0:
            raise ValueError(f"ttga.prompt_frames must be >= 0 or null; got "
                             f"{self.prompt_frames}")

    def frames_to_prompt(self, num_frames: int, generated: int) -> list[int]:
        """Video indices of the generated frames TTGA prompts: by default ``1 ..
        num_frames // 2 - 1`` (the first half of the sequence), else the first
        ``prompt_frames`` generated frames."""
        count = max(0, num_frames // 2 - 1) if self.prompt_frames is None else self.prompt_frames
        return list(range(1, 1 + min(count, generated)))


@dataclass(frozen=True)
class Preset:
    model: ModelSpec
    dbst: DBSTSpec
    ttga: TTGASpec


@dataclass(frozen=True)
class CAVSAMOptions:
    """Everything ``from_config`` accepts; see the YAML file for each key."""

    size: str = "auto"
    presets: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    dbst: dict = field(default_factory=dict)
    ttga: dict = field(default_factory=dict)
    reference_prompt: Literal["mask", "box"] = "mask"
    k_shot: Literal["average"] = "average"
    cache_mb: int = 1024

    def __post_init__(self) -> None:
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0; got {self.cache_mb}")


def preset(opts: CAVSAMOptions, name: str) -> Preset:
    """Preset ``name`` with the ``model``, ``dbst`` and ``ttga`` overrides applied."""
    return Preset(
        preset_section(opts.presets, name, "model", ModelSpec, opts.model, "cavsam"),
        preset_section(opts.presets, name, "dbst", DBSTSpec, opts.dbst, "cavsam"),
        preset_section(opts.presets, name, "ttga", TTGASpec, opts.ttga, "cavsam"))


def choose_preset(opts: CAVSAMOptions) -> tuple[str, Preset, str]:
    """(name, preset, reason) by the shared real-or-random rule."""
    real = preset(opts, "real") if "real" in opts.presets else None
    refs = [real.model.sam2_checkpoint, real.model.sd_checkpoint] if real else [None]
    choice = choose_size(opts.size, "cavsam", refs)
    return choice.name, preset(opts, choice.name), choice.reason


def variant(p: Preset) -> str:
    """A short name of the ablation setting, for the leaderboard's model column."""
    if p.dbst.generated == 0 and not p.ttga.enabled:
        return "two-frame"
    parts = [f"Nv={p.dbst.num_frames}" if p.dbst.generated else "no DBST",
             "TTGA" if p.ttga.enabled else "no TTGA"]
    return ", ".join(parts)
