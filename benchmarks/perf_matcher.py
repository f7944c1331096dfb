"""Per-episode time of the official Matcher code and of the ``matcher`` adapter, side by
side in one run: same model sizes and weights, same episodes in the same order, identical
masks asserted.

Episodes follow the FSS-1000 protocol's shape: a few classes with ``--per-class`` images
each, every image a query once with a reference from its own class, so an image recurs as
query and reference as in a real run (what the adapter's cache of image-only work is for).
The official side runs in a child process from a patched copy of the checkout named by
``MATCHER_OFFICIAL_DIR`` (``tests/methods/matcher_official.py``; it needs ``cv2``:
``pip install opencv-python-headless``).

CPU section: the tiny preset (random tiny SAM at 256, tiny DINOv2), on the ``fss`` and
``coco`` scripts (``--grid`` sets COCO's dense grid on both sides; the script's 64 costs
the official code minutes per episode on a CPU). GPU section: SAM ViT-H at 1024 and DINOv2
ViT-L/14 with random (calibrated) weights on CUDA; without CUDA it prints why and skips.

Run: ``MATCHER_OFFICIAL_DIR=... .venv/bin/python benchmarks/perf_matcher.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "methods"))

import matcher_official  # noqa: E402

from refseg_bench.episodes import Annotation, Episode, EpisodeSpec  # noqa: E402
from refseg_bench.methods.matcher.adapter import Matcher  # noqa: E402


def fss_like_episodes(classes: int, per_class: int, seed: int) -> list[Episode]:
    """Each image of each class a query once, its reference the next image of the class."""
    rng = np.random.default_rng(seed)
    pools = [[matcher_official.scene(int(rng.integers(200, 420)), int(rng.integers(200, 420)),
                                     rng) for _ in range(per_class)] for _ in range(classes)]
    out = []
    for c, pool in enumerate(pools):
        for i, (query, _) in enumerate(pool):
            ref, mask = pool[(i + 1) % per_class]
            spec = EpisodeSpec(len(out), 0, c + 1, f"c{c}_{i}", (f"c{c}_{i + 1}",), len(out))
            out.append(Episode(spec, f"class{c}", query, [ref],
                               [Annotation("mask", raster=mask)], [mask.astype(np.uint8)]))
    return out


def compare(setting: str, episodes: list[Episode], options: dict, device: torch.device,
            extra: tuple[str, ...]) -> None:
    overrides = {extra[i].lstrip("-"): int(extra[i + 1]) for i in range(0, len(extra), 2)}
    ours = Matcher(setting=setting, setting_overrides=overrides, **options)
    ours.setup(device)
    ours.use_setting(setting, "", 1)
    ours.start_streams(0)
    job = matcher_official.job_for(ours, setting, episodes, extra)
    job["device"] = str(device)
    with tempfile.TemporaryDirectory() as tmp:
        official = matcher_official.launch(job, Path(tmp))
    mine, seconds = [], []
    for ep in episodes:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        mine.append(ours.segment(ep))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    equal = [torch.equal(a.cpu(), b) for a, b in zip(mine, official["masks"], strict=True)]
    name = setting + (" " + " ".join(extra) if extra else "")
    print(f"\n{name} (weights seed {ours.spec.init_seed}): {len(episodes)} episodes, "
          f"{device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, emd_workers {ours.opts.emd_workers}")
    print(f"{'episode':>8}{'official s':>12}{'ours s':>10}{'ratio':>8}")
    for i, (a, b) in enumerate(zip(official["seconds"], seconds, strict=True)):
        print(f"{i:>8}{a:12.2f}{b:10.2f}{a / b:8.2f}")
    off_mean, our_mean = np.mean(official["seconds"]), np.mean(seconds)
    print(f"{'mean':>8}{off_mean:12.2f}{our_mean:10.2f}{off_mean / our_mean:8.2f}   "
          f"masks identical: {sum(equal)}/{len(equal)}; EMD solved {ours.emd.solved} of "
          f"{ours.emd.requested} scores (the official code solves every proposal's)")
    if not all(equal):
        raise SystemExit(f"{name}: masks differ from the official code")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    p.add_argument("--settings", nargs="+", default=["fss", "coco"])
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--grid", type=int, default=16, help="COCO dense grid (script: 64)")
    p.add_argument("--fss-seed", type=int, default=1,
                   help="random-weight seed for FSS: seed 0's single-mask proposals all share "
                   "one 37 x 37 mask (one EMD per episode); seed 1's differ (every EMD runs)")
    args = p.parse_args()
    if not os.environ.get(matcher_official.OFFICIAL_ENV):
        raise SystemExit(f"set {matcher_official.OFFICIAL_ENV} to a checkout of "
                         "github.com/aim-uofa/Matcher")
    episodes = fss_like_episodes(args.classes, args.per_class, seed=3)
    extra = {"coco": ("--points_per_side", str(args.grid)) if args.grid != 64 else (),
             "lvis": ("--points_per_side", str(args.grid)) if args.grid != 64 else ()}
    if "cpu" in args.sections:
        for setting in args.settings:
            seed = args.fss_seed if setting.startswith("fss") else 0
            compare(setting, episodes, {"size": "tiny", "model": {"init_seed": seed}},
                    torch.device("cpu"), extra.get(setting, ()))
    if "gpu" in args.sections:
        if not torch.cuda.is_available():
            print("\nGPU section skipped: CUDA is not available. It compares the official "
                  "code and the adapter per episode with SAM ViT-H at 1024 and DINOv2 "
                  "ViT-L/14 (random calibrated weights); run it on a machine with a GPU.")
            return
        real_random = {"size": "real", "model": {"sam_checkpoint": None,
                                                 "dinov2_checkpoint": None,
                                                 "sam_logit_scale": 400.0,
                                                 "sam_iou_offset": 0.85}}
        for setting in args.settings:
            compare(setting, episodes, real_random, torch.device("cuda"),
                    extra.get(setting, ()))


if __name__ == "__main__":
    main()
