"""Encoder passes and wall time of a 1000-episode run, with and without the embedding cache.

Episodes: ``sample_episodes`` with the ``hsnet`` preset (class drawn uniformly, query and
supports drawn from the class's images) on fold ``--fold`` of the embedded synthetic
benchmark (``refseg_bench.datasets.synthetic``, PASCAL-5i-like: 20 classes in 4 folds,
1-3 classes per image, so a fold's few hundred images recur across 1000 episodes). Where
that module is absent, an in-script PASCAL-like dataset with the same structure is used.

Each batch of ``--batch-size`` episodes loads its query and support images and encodes
them with a tiny random SAM image encoder (``build_sam("tiny", image_size=...)``):
- ``no cache``: every image of the batch in one forward;
- ``cache``:    ``EmbeddingCache.encode_batch``, i.e. only images never seen before, in one
                forward (an image repeated within or across batches is encoded once).
Both runs load every image (the cache key is the image content). The cached embeddings are
checked against freshly computed ones on a sample of episodes.

Run: ``.venv/bin/python benchmarks/perf_embedding_cache.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from perf_report import headline

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.models.cache import EmbeddingCache, EncoderId, image_sha256
from refseg_bench.models.sam import build_sam, encode_sam_images
from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import sample_episodes


class PascalLike(FoldedDataset):
    """In-memory stand-in for PASCAL-5i: 20 classes, 4 folds of 5, ``n_images`` val images
    showing 1-3 classes each, ~375x500 images generated from the item id."""

    name = "pascal-like"
    n_folds = 4

    def __init__(self, n_images: int = 1449, seed: int = 0) -> None:
        super().__init__(".")
        rng = np.random.default_rng(seed)
        self._classes = {f"val_{i:05d}": sorted(rng.choice(20, rng.integers(1, 4), replace=False)
                                                + 1) for i in range(n_images)}

    @property
    def class_names(self) -> list[str]:
        return [f"class{i}" for i in range(1, 21)]

    def classes(self, fold: int, split: str) -> list[int]:
        return list(range(5 * fold + 1, 5 * fold + 6))

    def items(self, fold: int, split: str, class_id: int) -> list[str]:
        return [k for k, cs in self._classes.items() if class_id in cs]

    def query_items(self, fold: int, split: str) -> list[str]:
        novel = set(self.classes(fold, split))
        return [k for k, cs in self._classes.items() if novel & set(cs)]

    def item_classes(self, fold: int, split: str, item: str) -> list[int]:
        return [c for c in self._classes[item] if c in self.classes(fold, split)]

    def load_image(self, item: str) -> np.ndarray:
        rng = np.random.default_rng(int(item.split("_")[1]))
        h, w = (375, 500) if rng.random() < 0.7 else (500, 375)
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        raise NotImplementedError("the benchmark only encodes images")


def make_dataset(kind: str, root: Path) -> FoldedDataset:
    if kind == "synthetic":
        try:
            from refseg_bench.datasets.synthetic import SyntheticDataset
        except ImportError:
            print("refseg_bench.datasets.synthetic not available: using the in-script dataset")
            return PascalLike()
        return SyntheticDataset(root)
    return PascalLike()


@dataclass
class RunResult:
    mode: str
    images_seen: int
    images_encoded: int
    forward_calls: int
    wall_s: float


def run(ds, episodes, batch_size: int, sam, cache: EmbeddingCache | None) -> RunResult:
    """Load and encode every episode's images, batch by batch; returns the counters."""
    enc = EncoderId.of(sam, sam.image_encoder.img_size)
    seen = encoded = calls = 0
    start = time.perf_counter()
    for i in range(0, len(episodes), batch_size):
        names = [n for ep in episodes[i:i + batch_size] for n in (ep.query, *ep.supports)]
        images = [ds.load_image(n) for n in names]
        seen += len(images)
        if cache is None:
            encode_sam_images(sam, images)
            encoded, calls = encoded + len(images), calls + 1
        else:
            cache.encode_batch(images, enc, lambda ims: encode_sam_images(sam, ims))
    wall = time.perf_counter() - start
    if cache is not None:
        encoded, calls = cache.stats.images_encoded, cache.stats.encoder_passes
    return RunResult("cache" if cache else "no cache", seen, encoded, calls, wall)


def check_cached_equal(ds, episodes, sam, cache: EmbeddingCache, n: int = 20) -> float:
    """Largest |cached - fresh| over the images of ``n`` episodes."""
    enc = EncoderId.of(sam, sam.image_encoder.img_size)
    worst = 0.0
    for ep in episodes[:n]:
        for name in (ep.query, *ep.supports):
            image = ds.load_image(name)
            cached = cache.get(enc.key(image_sha256(image)))
            if cached is None:
                raise AssertionError(f"{name} was encoded in the cached run but is not cached")
            worst = max(worst, float((cached - encode_sam_images(sam, [image])[0]).abs().max()))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--shot", type=int, default=1)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="episodes per batch")
    p.add_argument("--image-size", type=int, default=256, help="tiny SAM encoder input")
    p.add_argument("--dataset", choices=("synthetic", "inline"), default="synthetic")
    p.add_argument("--root", type=Path, default=Path(os.environ.get(
        "REFSEG_BENCH_DATA", "~/.cache/refseg-bench/data")).expanduser() / "synthetic")
    args = p.parse_args()

    ds = make_dataset(args.dataset, args.root)
    manifest = sample_episodes(ds, args.fold, "val", args.shot, args.episodes, seed=0,
                               protocol=load_protocol("hsnet"))
    episodes = list(manifest.episodes)
    distinct = len({n for ep in episodes for n in (ep.query, *ep.supports)})
    torch.manual_seed(0)
    sam = build_sam("tiny", image_size=args.image_size)
    sam.image_encoder.requires_grad_(False)
    with torch.inference_mode():
        run(ds, episodes[:args.batch_size], args.batch_size, sam, None)  # warm-up
        plain = run(ds, episodes, args.batch_size, sam, None)
        cache = EmbeddingCache()
        cached = run(ds, episodes, args.batch_size, sam, cache)
        worst = check_cached_equal(ds, episodes, sam, cache)
    report(args, ds, distinct, plain, cached, cache, worst)


def report(args, ds, distinct, plain: RunResult, cached: RunResult, cache, worst) -> None:
    print(f"{args.episodes} episodes, {args.shot}-shot, {ds.name} fold {args.fold} (val), "
          f"hsnet protocol, batches of {args.batch_size} episodes; tiny SAM encoder at "
          f"{args.image_size}px, {torch.get_num_threads()} CPU threads; "
          f"{distinct} distinct images in the manifest")
    header = f"{'':<10}{'images seen':>13}{'images encoded':>16}{'forward calls':>15}{'wall s':>9}"
    print(header)
    for r in (plain, cached):
        print(f"{r.mode:<10}{r.images_seen:>13}{r.images_encoded:>16}{r.forward_calls:>15}"
              f"{r.wall_s:>9.2f}")
    print(f"{'ratio':<10}{'':>13}{plain.images_encoded / cached.images_encoded:>15.1f}x"
          f"{plain.forward_calls / cached.forward_calls:>14.2f}x"
          f"{plain.wall_s / cached.wall_s:>8.2f}x")
    print(f"cache: {len(cache)} entries, {cache.bytes_used / 2**20:.1f} MiB; cached vs fresh "
          f"embeddings: max |diff| {worst:.2e}")
    headline("embedding cache: encoding wall time, without over with",
             plain.wall_s / cached.wall_s,
             note=f"{plain.images_encoded} vs {cached.images_encoded} images encoded, "
                  f"{args.episodes} episodes")


if __name__ == "__main__":
    main()
