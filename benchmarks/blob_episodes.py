"""Generated episodes for the adapter speed benchmarks: noisy images with one bright
ellipse each. Speed does not depend on content, so no dataset is needed."""

from __future__ import annotations

import time

import numpy as np
import torch

from refseg_bench.episodes import Annotation, Episode, EpisodeBatch, EpisodeSpec


def _scene(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` uint8 image and its ``(H, W)`` bool ellipse mask."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7, 2) * (h, w)
    mask = ((yy - cy) / (0.2 * h)) ** 2 + ((xx - cx) / (0.15 * w)) ** 2 < 1
    img = rng.integers(0, 100, (h, w, 3)).astype(np.uint8)
    img[mask] = rng.integers(150, 255, (int(mask.sum()), 3)).astype(np.uint8)
    return img, mask


def make_episode(index: int, size: tuple[int, int], rng: np.random.Generator,
                 shot: int = 1) -> tuple[Episode, np.ndarray]:
    """A ``shot``-shot episode with mask references, and its ``(H, W)`` uint8 query label."""
    query, query_mask = _scene(size, rng)
    refs = [_scene(size, rng) for _ in range(shot)]
    spec = EpisodeSpec(index, 0, 1, f"q{index}", tuple(f"s{index}_{i}" for i in range(shot)),
                       index)
    episode = Episode(spec, "blob", query, [r for r, _ in refs],
                      [Annotation("mask", raster=m) for _, m in refs],
                      [m.astype(np.uint8) for _, m in refs])
    return episode, query_mask.astype(np.uint8)


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def eval_rate(method, device: torch.device, size: tuple[int, int], n: int, shot: int,
              warm: bool) -> float:
    """Episodes/s of ``method.predict`` over ``n`` new ``shot``-shot episodes of ``size``
    in batches of ``method.opts.batch_size``, after one warm-up batch; ``warm``: every
    batch is predicted once before the timed pass (reference caches full)."""
    rng = np.random.default_rng(1)
    episodes = [make_episode(10**6 + i, size, rng, shot)[0] for i in range(n)]
    step = method.opts.batch_size
    batches = [EpisodeBatch(episodes[i:i + step], "mask") for i in range(0, n, step)]
    with torch.inference_mode():
        method.predict(batches[0])  # warm-up (and, for warm, fills the cache)
        if warm:
            for b in batches:
                method.predict(b)
        sync(device)
        t0 = time.perf_counter()
        for b in batches:
            method.predict(b)
        sync(device)
    return n / (time.perf_counter() - t0)
