"""What every comparison of ``vs_official.py`` shares: the context a side runs in, a
side's result, and our side (``refseg-bench run`` through the runner API)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Context:
    """What every side function gets: the parsed options, the device, the episode kind
    (``recurring`` or ``distinct``, ``official_episodes.py``), a private working folder of
    this side (``work``) and the inputs written once by ``prepare`` (``shared``)."""

    args: argparse.Namespace
    device: torch.device
    kind: str
    shared: Path
    work: Path


@dataclass
class Side:
    """One side's result: ``seconds`` (wall), ``miou`` (percent), ``masks`` per episode key,
    and a ``timing`` breakdown (seconds by stage) printed under the table.

    ``near`` (official sides that expose their scores; empty otherwise): per episode key,
    ``(H, W)`` bool, the pixels whose score lies within a stated band of the threshold,
    where the two sides' float rounding (last bits, e.g. ~1e-7 on a logit) may decide
    differently; ``near_rule`` states the band (printed with the mask check)."""

    seconds: float
    miou: float
    masks: dict[str, np.ndarray]
    timing: dict = field(default_factory=dict)
    near: dict[str, np.ndarray] = field(default_factory=dict)
    near_rule: str = ""


@dataclass(frozen=True)
class Comparison:
    """``prepare`` writes the shared inputs (episodes, data, weight files) under
    ``ctx.shared``; ``official`` and ``ours`` run one side each (in a fresh process) and
    return a ``Side`` whose mask keys name the same episodes. ``cpu_only``: why the
    comparison cannot run on a GPU (skipped there with that reason), or empty."""

    name: str
    env: str
    prepare: Callable[[Context], None]
    official: Callable[[Context], Side]
    ours: Callable[[Context], Side]
    cpu_only: str = ""


def import_model_libraries() -> None:
    """Import the model libraries both sides build on (torchvision, segment_anything,
    sam2; about 2 s, mostly torchvision pulling in torch._dynamo) before a side's clock
    starts: the official scripts import them above their timed loops, and our run would
    otherwise pay for the import inside its clock."""
    import importlib

    for name in ("torchvision", "segment_anything", "sam2"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def run_ours(ctx: Context, overrides: list[str]) -> Side:
    """``refseg-bench run`` in this process with ``overrides`` (method, dataset, episodes,
    options) plus the benchmark's run settings: the embedding and reference caches, the
    batch size and the prefetching loader workers as a user gets them. Timed whole: dataset
    lists, manifest, model build, loop, scoring, record and plots (library imports are
    not: :func:`import_model_libraries`). Masks are read back from the saved predictions,
    keyed by episode index."""
    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    cfg = resolve_config([*overrides, f"results_dir={ctx.work / 'results'}", "run_id=ours",
                          "progress=false", "save_predictions=true", f"device={ctx.device}",
                          f"batch_size={ctx.args.batch_size}", *ctx.args.ours_args])
    import_model_libraries()
    start = time.perf_counter()
    summary = run(cfg)
    seconds = time.perf_counter() - start
    return Side(seconds, summary["mean_miou"], saved_masks(ctx.work / "results" / "ours"),
                {**summary["timing"], "num_workers": summary["num_workers"]})


def saved_masks(run_dir: Path) -> dict[str, np.ndarray]:
    """``{episode index: (H, W) bool}`` from a run's saved prediction PNGs (fold 0)."""
    return {str(int(png.stem)): png_mask(png)
            for png in (run_dir / "predictions").rglob("*.png")}


def png_mask(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 0


# Official logits this close to 0 may land on either side of the threshold after float32
# rounding that differs between the two implementations (parity: ~4e-7); about 250x that.
NEAR_LOGIT = 1e-4
NEAR_RULE = f"official |logit| < {NEAR_LOGIT:g}"


def record_logits(model) -> list[torch.Tensor]:
    """Keep the ``(S, S)`` float32 logits of every episode that ``model``'s forward returns
    (its first output, one map per episode), in order; the model and its output are
    unchanged. The official side's logits feed :func:`near_threshold`."""
    logits: list[torch.Tensor] = []
    forward = model.forward

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        logits.extend(o.detach().cpu().float().reshape(o.shape[-2:]).clone() for o in out[0])
        return out

    model.forward = recording
    return logits


def near_threshold(logits: list, masks: dict[str, np.ndarray], *, strict: bool
                   ) -> dict[str, np.ndarray]:
    """Per episode, the pixels whose official logit is within ``NEAR_LOGIT`` of 0.
    ``logits``: one ``(H, W)`` tensor per scored episode, in order, at the mask's size;
    each official mask is checked to be ``sigmoid(logit) > 0.5`` (``strict``) or
    ``>= 0.5`` of it, so the band is taken on what was really scored."""
    if len(logits) != len(masks):
        raise AssertionError(f"{len(logits)} official forward outputs for {len(masks)} "
                             f"scored episodes")
    near = {}
    for (key, mask), logit in zip(masks.items(), logits, strict=True):
        p = torch.sigmoid(logit)
        rule = (p > 0.5) if strict else (p >= 0.5)
        if tuple(logit.shape) != mask.shape or not np.array_equal(mask, rule.numpy()):
            raise AssertionError(f"episode {key}: the official mask is not sigmoid "
                                 f"{'>' if strict else '>='} 0.5 of its forward output "
                                 f"(shapes {mask.shape}, {tuple(logit.shape)})")
        near[key] = (logit.abs() < NEAR_LOGIT).numpy()
    return near
