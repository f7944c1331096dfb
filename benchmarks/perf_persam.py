"""Per-episode speed of the ``persam`` and ``persam_f`` adapters.

CPU section: the tiny random SAM at 256 px (what ``checkpoint: auto`` falls back to), on
generated 240 x 320 episodes (the synthetic benchmark's size range), 1-shot mask
references, every image new (no embedding-cache hits), PerSAM-F with the official 1000
training steps. Reported: episodes/s and ms per episode, and for PerSAM-F the share spent
fitting the mask weights.

GPU section: SAM ViT-H at 1024 px with random weights (the speed does not depend on the
values), same episodes at 480 x 640, CUDA-synchronised. Without CUDA it prints why and
exits 0.

Run: ``.venv/bin/python benchmarks/perf_persam.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from blob_episodes import make_episode, sync
from perf_report import headline, skipped

from refseg_bench.episodes import Episode, EpisodeBatch
from refseg_bench.methods.persam.adapter import PerSAM, PerSAMF


def time_episodes(method, episodes: list[Episode], warmup: int, device: torch.device) -> float:
    """Seconds per episode of ``method.predict`` over ``episodes[warmup:]``."""
    for ep in episodes[:warmup]:
        method.predict(EpisodeBatch([ep], "mask"))
    sync(device)
    start = time.perf_counter()
    for ep in episodes[warmup:]:
        method.predict(EpisodeBatch([ep], "mask"))
    sync(device)
    return (time.perf_counter() - start) / len(episodes[warmup:])


def time_fitting(method: PerSAMF, episodes: list[Episode], device: torch.device) -> float:
    """Seconds per episode spent fitting the mask weights alone (images already cached)."""
    total = 0.0
    for ep in episodes:
        refs = method.encode(ep.support_images)
        masks = method.reference_masks(refs, ep)
        target = method.target_embedding(refs, masks)
        sync(device)
        start = time.perf_counter()
        method.fit_weights(refs, masks, target)
        sync(device)
        total += time.perf_counter() - start
    return total / len(episodes)


def run_section(title: str, device: torch.device, options: dict, size, n: int, warmup: int,
                train_iters: int) -> None:
    rng = np.random.default_rng(0)
    episodes = [make_episode(i, size, rng)[0] for i in range(n + warmup)]
    print(f"\n{title}: {n} episodes of {size[0]}x{size[1]} after {warmup} warm-up, "
          f"{device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'method':<10}{'episodes/s':>12}{'ms/episode':>12}{'fit ms':>10}")
    for cls, extra in ((PerSAM, {}), (PerSAMF, {"train_iters": train_iters})):
        method = cls(**options, **extra)
        method.setup(device)
        per_ep = time_episodes(method, episodes, warmup, device)
        with torch.no_grad():
            fit = time_fitting(method, episodes[warmup:], device) if cls is PerSAMF else None
        fit_txt = f"{fit * 1e3:10.1f}" if fit is not None else f"{'-':>10}"
        print(f"{cls.name:<10}{1 / per_ep:12.2f}{per_ep * 1e3:12.1f}{fit_txt}")
        headline(f"{cls.name} {title}: episodes/s", 1 / per_ep, unit="ep/s",
                 note=f"{size[0]}x{size[1]} episodes, every image new")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--train-iters", type=int, default=1000)
    args = p.parse_args()
    if "cpu" in args.sections:
        run_section("CPU, tiny random SAM @256", torch.device("cpu"),
                    dict(size="tiny"), (240, 320),
                    args.episodes, args.warmup, args.train_iters)
    if "gpu" in args.sections:
        if not torch.cuda.is_available():
            print("\nGPU section skipped: CUDA is not available. It times PerSAM and PerSAM-F "
                  "per episode on SAM ViT-H at 1024 (random weights); run this script on a "
                  "machine with an NVIDIA GPU.")
            for name in ("persam", "persam_f"):
                skipped(f"{name} GPU, SAM ViT-H @1024: episodes/s", "no CUDA device",
                        unit="ep/s")
            return
        print(f"\nGPU: {torch.cuda.get_device_name()}")
        run_section("GPU, SAM ViT-H @1024 (random weights)", torch.device("cuda"),
                    dict(size="real", model={"checkpoint": None}), (480, 640),
                    args.episodes, args.warmup, args.train_iters)


if __name__ == "__main__":
    main()
