"""Training and evaluation speed of the ``fss_sam2`` adapter.

CPU section: the tiny preset (tiny random SAM 2 at 128 px, tiny DINOv2 at 140 px: what
``size: auto`` falls back to without the official files), on generated 240 x 320
episodes. Reported: training iterations/s at the preset's batch size (one optimiser step
over a batch of 1-shot episodes with the official augmentation, data preparation
included) and evaluation episodes/s for 1 and 5 shots, with every image new (cold feature
cache) and with the frozen SAM 2 / DINOv2 features of every image cached (warm), and the
ratios between them.

GPU section: the real size (SAM 2.0 Hiera-S at 512, DINOv2 ViT-B/14 at 560) with random
weights (speed does not depend on the values) in bf16 autocast, batch 8 as the official
recipe, CUDA-synchronised. Without CUDA it prints why and exits 0.

Run: ``.venv/bin/python benchmarks/perf_fss_sam2.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch
from blob_episodes import eval_rate, make_episode, sync
from perf_report import headline, skipped

from refseg_bench.methods.base import Unit
from refseg_bench.methods.fss_sam2 import trainer as T
from refseg_bench.methods.fss_sam2.adapter import FSSAM

REAL_MODEL = {"sam2": "hiera_s", "sam2_version": "2.0", "sam2_checkpoint": None,
              "image_size": 512, "dino": "vitb14", "dino_checkpoint": None, "dino_size": 560}


def build(size_name: str, model: dict, train: dict, device: torch.device) -> FSSAM:
    """An untrained FSSAM with exactly this model and recipe (no checkpoint lookup)."""
    method = FSSAM(size=size_name, presets={size_name: {"model": model, "train": train}},
                   checkpoint_dir=tempfile.mkdtemp(prefix="fss-sam2-perf-"), untrained=True,
                   batch_size=int(train["batch_size"]))
    blobs = SimpleNamespace(name="blobs")  # generated episodes: no dataset on disk
    method.setup(device, blobs)
    method.begin_unit(Unit(blobs, 0, "val", 1, "mask", 0))  # untrained: the initial weights
    return method


def train_rate(method: FSSAM, device: torch.device, size, steps: int, warmup: int) -> float:
    """Optimiser steps per second on distinct augmented batches."""
    settings = method.preset.train
    rng = np.random.default_rng(0)
    batches = [[make_episode(i * 100 + j, size, rng) for j in range(settings.batch_size)]
               for i in range(steps + warmup)]
    opt, sched = T.make_optimizer(method.net, settings, steps + warmup)
    for i, b in enumerate(batches):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        tensors, target = T.training_batch([e for e, _ in b], [lab for _, lab in b],
                                           method.net.image_size, settings, 0)
        T.train_step(method.net, tensors, target, opt, sched, 0, i, method.autocast)
    sync(device)
    method.net.model.eval()
    return steps / (time.perf_counter() - t0)


def section(name: str, size_name: str, model: dict, train: dict, device: torch.device,
            size, args) -> None:
    method = build(size_name, model, train, device)
    print(f"\n== {name}: {device} ({torch.get_num_threads()} threads), SAM 2 "
          f"{model['sam2_version']}/{model['sam2']} at {model['image_size']}, DINOv2 "
          f"{model['dino']} at {model['dino_size']}, {method.precision}, batch "
          f"{train['batch_size']}, images {size[1]}x{size[0]}")
    rate = train_rate(method, device, size, args.steps, args.warmup)
    print(f"training: {rate:6.2f} it/s = {rate * train['batch_size']:7.1f} episodes/s "
          "(augmentation included)")
    one = None
    for shot in (1, 5):
        cold = eval_rate(method, device, size, args.episodes, shot, warm=False)
        warm = eval_rate(method, device, size, args.episodes, shot, warm=True)
        one = one or cold
        headline(f"fss_sam2 {name}, {shot}-shot evaluation: episodes/s", cold, unit="ep/s",
                 note=f"{warm:.1f} episodes/s with cached features")
        print(f"evaluation {shot}-shot: {cold:7.1f} episodes/s new images, {warm:7.1f} "
              f"episodes/s cached features (x{warm / cold:.2f}); cost vs 1-shot "
              f"x{one / cold:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--episodes", type=int, default=32, help="timed evaluation episodes")
    p.add_argument("--skip-cpu", action="store_true")
    args = p.parse_args()
    from omegaconf import OmegaConf

    from refseg_bench.config import resolve_config

    presets = resolve_config(["method=fss_sam2"]).method_args.presets
    tiny = OmegaConf.to_container(presets.tiny)
    if not args.skip_cpu:
        section("CPU, tiny preset", "tiny", tiny["model"], tiny["train"], torch.device("cpu"),
                (240, 320), args)
    if not torch.cuda.is_available():
        print("\n== GPU, real size: skipped (no CUDA device here); run this script on a GPU "
              "machine for the real-size numbers (Hiera-S at 512, bf16).")
        for shot in (1, 5):
            skipped(f"fss_sam2 GPU, real size (random weights), {shot}-shot evaluation: "
                    "episodes/s", "no CUDA device", unit="ep/s")
        return 0
    real = OmegaConf.to_container(presets.real)
    section("GPU, real size (random weights)", "real", REAL_MODEL,
            {**real["train"], "batch_size": 8}, torch.device("cuda"), (480, 640), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
