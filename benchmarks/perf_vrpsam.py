"""Training and evaluation speed of the ``vrpsam`` adapter.

CPU section: the tiny preset (tiny random SAM at 256 px, ``resnet_v2_tiny`` at 128 px:
what ``size: auto`` falls back to without the official files), on generated 240 x 320
episodes. Reported: training iterations/s at the preset's batch size (one optimiser step
over a batch of 1-shot episodes, data preparation included, SAM embeddings already cached
as they are after the first epoch) and evaluation episodes/s, each query new (cold cache)
and repeated (warm cache).

GPU section: the real size (SAM ViT-H at 1024, ResNet-50 v2 at 512, 50 queries) with
random weights (speed does not depend on the values), batch 8 as in the official recipe,
CUDA-synchronised. Without CUDA it prints why and exits 0.

Run: ``.venv/bin/python benchmarks/perf_vrpsam.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import types

import numpy as np
import torch
from blob_episodes import eval_rate, make_episode, sync
from perf_report import headline, skipped

from refseg_bench.methods.base import Unit
from refseg_bench.methods.vrpsam import trainer as T
from refseg_bench.methods.vrpsam.adapter import VRPSAM
from refseg_bench.methods.vrpsam.inputs import image_tensor

REAL_MODEL = {"sam": "vit_h", "sam_checkpoint": None, "sam_image_size": 1024,
              "backbone": "resnet50_v2", "backbone_checkpoint": None, "image_size": 512}


def build(size_name: str, model: dict, train: dict, device: torch.device) -> VRPSAM:
    """An untrained VRPSAM with exactly this model and recipe (no checkpoint lookup)."""
    method = VRPSAM(size=size_name, presets={size_name: {"model": model, "train": train}},
                    checkpoint_dir=tempfile.mkdtemp(prefix="vrpsam-perf-"), untrained=True,
                    batch_size=int(train["batch_size"]))
    # No dataset: a stand-in names the (unused) checkpoint folder; begin_unit activates
    # the untrained encoder, as the runner does before the first predict of a unit.
    method.setup(device, types.SimpleNamespace(name="blob-episodes"))
    method.begin_unit(Unit(method.dataset, 0, "val", 1, "mask", 0))
    return method


def _stack(images, method: VRPSAM) -> torch.Tensor:
    return torch.stack([image_tensor(im, method.net.image_size) for im in images]).to(
        method.net.device)


def train_rate(method: VRPSAM, device: torch.device, size, steps: int, warmup: int) -> float:
    """Optimiser steps per second on distinct batches whose embeddings are cached."""
    settings = method.preset.train
    rng = np.random.default_rng(0)
    batches = [[make_episode(i * 100 + j, size, rng) for j in range(settings.batch_size)]
               for i in range(steps + warmup)]
    opt, sched = T.make_optimizer(method.net, settings, steps + warmup)
    with torch.no_grad():  # fill the embedding cache, as after the first epoch
        for b in batches:
            images = [e.query_image for e, _ in b]
            method.net.embeddings(_stack(images, method), images)
    for i, b in enumerate(batches):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        T.train_step(method.net, [e for e, _ in b], [lab for _, lab in b], opt, sched, 0, i)
    sync(device)
    return steps / (time.perf_counter() - t0)


def section(name: str, size_name: str, model: dict, train: dict, device: torch.device,
            size, args) -> None:
    method = build(size_name, model, train, device)
    print(f"\n== {name}: {device} ({torch.get_num_threads()} threads), SAM {model['sam']} at "
          f"{model['sam_image_size']}, {model['backbone']} at {model['image_size']}, "
          f"batch {train['batch_size']}, images {size[1]}x{size[0]}")
    rate = train_rate(method, device, size, args.steps, args.warmup)
    print(f"training: {rate:6.2f} it/s = {rate * train['batch_size']:7.1f} episodes/s "
          "(embeddings cached)")
    for shot in (1, 5):
        cold = eval_rate(method, device, size, args.episodes, shot, warm=False)
        warm = eval_rate(method, device, size, args.episodes, shot, warm=True)
        print(f"evaluation {shot}-shot: {cold:7.1f} episodes/s new queries, {warm:7.1f} "
              "episodes/s cached query embeddings")
        headline(f"vrpsam {name}, {shot}-shot evaluation: episodes/s", cold, unit="ep/s",
                 note=f"{warm:.1f} episodes/s with cached query embeddings")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--episodes", type=int, default=64, help="timed evaluation episodes")
    p.add_argument("--skip-cpu", action="store_true")
    args = p.parse_args()
    from omegaconf import OmegaConf

    from refseg_bench.config import resolve_config

    tiny = OmegaConf.to_container(resolve_config(["method=vrpsam"]).method_args.presets.tiny)
    if not args.skip_cpu:
        section("CPU, tiny preset", "tiny", tiny["model"], tiny["train"], torch.device("cpu"),
                (240, 320), args)
    if not torch.cuda.is_available():
        print("\n== GPU, real size: skipped (no CUDA device here); run this script on a GPU "
              "machine for the real-size numbers.")
        for shot in (1, 5):
            skipped(f"vrpsam GPU, real size (random weights), {shot}-shot evaluation: "
                    "episodes/s", "no CUDA device", unit="ep/s")
        return 0
    section("GPU, real size (random weights)", "real", REAL_MODEL,
            {**tiny["train"], "batch_size": 8, "lr": 1e-4}, torch.device("cuda"),
            (480, 640), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
