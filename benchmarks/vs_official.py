"""Whole runs against the official evaluation loops: same episodes, same weights, same masks.

For each method, one run of the official evaluation loop (replayed from its checkout with
its own modules: ``official_persam.py``, ``official_vrpsam.py``, ``official_matcher.py``,
``official_fss_sam2.py`` say exactly what is replayed and what had to be replaced) and one
run of ``refseg-bench run`` (the runner API, with its embedding and reference caches,
batching and prefetching loader workers as a user gets them) on the same episodes, with
the same weight files. Each side runs in a fresh subprocess (no module clashes, no warm
caches), timed from inside: the official loop from its model build or first image read to
its mIoU, ours the whole ``run()`` (dataset lists, manifest, model build, loop, scoring,
record and plots). The masks of every scored episode are compared and must be identical,
except pixels the official side marks as within a stated band of its threshold (``Side.near``;
FSS-SAM2: official logit within 1e-4 of 0), where float32 rounding in a different order may
decide either way: those are counted and printed, never hidden. The table prints both wall
times and their ratio. The mIoU printed per side is that side's own average (over the
fold's classes, the classes seen, or per object); with identical masks any difference
between the two is in that averaging.

Two kinds of episodes (``official_episodes.py``), both run by default:

- ``recurring``: drawn by the harness's sampler under the method's protocol preset from
  the synthetic benchmark with ``--per-class`` images per class, as many episodes per image
  as a PASCAL-5i fold (1000 episodes on 345 images): images recur as queries and supports,
  as in a real run. The target (>= 3x) is held to this kind.
- ``distinct`` (``--distinct-images`` alone): no image in two episodes, the worst case for
  every cache (PerSAM: its own PerSeg protocol on generated objects, each target new).

Official checkouts come from environment variables (a method whose variable is unset is
skipped with a message): ``PERSAM_OFFICIAL_DIR`` (github.com/ZrrSkywalker/Personalize-SAM)
for ``persam`` and ``persam_f``, ``VRPSAM_OFFICIAL_DIR`` (github.com/syp2ysy/VRP-SAM),
``MATCHER_OFFICIAL_DIR`` (github.com/aim-uofa/Matcher; needs ``cv2``),
``FSSAM_OFFICIAL_DIR`` (github.com/Sam1224/FSSAM; needs ``cv2`` and ``einops``). Sizes: by
default on the CPU the tiny random models (``--size tiny``), with CUDA the real
architectures with random weights (``--size real``; the speed does not depend on the
values). ``--size real`` also runs on the CPU, slowly (FSSAM's official loop takes about
10 s an episode there): the tiny models keep some stages at full width while their image
encoders shrink most, so the tiny ratio of a cache-heavy method understates the real one.
A comparison whose official side cannot run on a GPU (FSS-SAM2's) is skipped there with
the reason. ``--threads N`` gives both sides N threads (1: the fairest on a shared
machine).

Adding a method is one ``Comparison`` in ``COMPARISONS`` (``official_common.py``): its name,
the environment variable of its checkout, and three functions of a ``Context``: ``prepare``
(write the episodes, data and weight files under ``ctx.shared``), ``official`` and ``ours``
(run one side, return a ``Side`` whose masks are keyed by episode index). This script does
the subprocesses, the mask check and the table.

Run: ``.venv/bin/python benchmarks/vs_official.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from official_common import Comparison, Context, Side, png_mask, run_ours
from official_episodes import KINDS, EpisodeSet, default_episodes, loaded
from perf_report import headline, skipped

TARGET = 3.0  # x: our whole run against the official loop, recurring images


# --- PerSAM / PerSAM-F ---------------------------------------------------------------------


def persam_prepare(ctx: Context) -> None:
    """Episodes (recurring: hsnet on the synthetic benchmark, each episode written as a
    PerSeg object for the official scripts; distinct: PerSeg objects of new images) and a
    SAM weight file."""
    from official_episodes import distinct, recurring

    a = ctx.args
    if ctx.kind == "recurring":
        es = recurring(ctx.shared, a.per_class, a.episodes, "hsnet")
        keys = write_episode_objects(es, ctx.shared / "official_perseg")
    else:
        es = distinct(ctx.shared, a.objects or 3, a.image_side, a.seed, images=a.images,
                      square=False, palette=True)
        keys = {e["query"]: e["index"] for e in es.episodes}
    es.save(ctx.shared / "episodes.json")
    (ctx.shared / "official_keys.json").write_text(json.dumps(keys))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(a.seed)
        from refseg_bench.models.sam import build_sam

        sam = build_sam(_arch(ctx), image_size=1024)  # the official code assumes a 64x64 grid
    torch.save(sam.state_dict(), ctx.shared / "sam.pt")


def write_episode_objects(es: EpisodeSet, root: Path) -> dict[str, int]:
    """Every 1-shot episode as a PerSeg object for the official scripts: ``00`` the support
    (its annotation raster as a palette mask), ``01`` the query, the arrays our loader
    hands our method, stored losslessly. Returns ``{"<object>/01": episode index}``."""
    from official_data import object_name, write_mask
    from PIL import Image

    keys = {}
    for le in loaded(es):
        if le.episode is None:
            raise RuntimeError(f"episode {le.spec.index} skipped by the loader: "
                               f"{le.skip_reason}")
        ep, name = le.episode, object_name(le.spec.index)
        for d in ("Images", "Annotations"):
            (root / d / name).mkdir(parents=True)
        Image.fromarray(ep.support_images[0]).save(root / "Images" / name / "00.jpg", "PNG")
        Image.fromarray(ep.query_image).save(root / "Images" / name / "01.jpg", "PNG")
        write_mask(root / "Annotations" / name / "00.png", np.asarray(ep.annotations[0].raster))
        write_mask(root / "Annotations" / name / "01.png", le.label == 1)
        keys[f"{name}/01"] = le.spec.index
    return keys


def persam_side(variant: str, which: str) -> Callable[[Context], Side]:
    def official(ctx: Context) -> Side:
        from official_persam import run_official

        es = EpisodeSet.load(ctx.shared / "episodes.json")
        data = ctx.shared / "official_perseg" if es.kind == "recurring" else es.root
        out = run_official(variant, data, ctx.shared / "sam.pt", ctx.work / "outputs",
                           arch=_arch(ctx), image_size=1024, device=ctx.device,
                           train_iters=ctx.args.persam_f_iters,
                           figures=not ctx.args.no_figures)
        keys = json.loads((ctx.shared / "official_keys.json").read_text())
        masks = {str(keys[f"{p.parent.name}/{p.stem}"]): png_mask(p)
                 for p in (ctx.work / "outputs").rglob("*.png")
                 if f"{p.parent.name}/{p.stem}" in keys}  # the scripts also segment 00
        return Side(out["timing"]["total_s"], out["miou"], masks, out["timing"])

    def ours(ctx: Context) -> Side:
        es = EpisodeSet.load(ctx.shared / "episodes.json")
        model = {"sam": _arch(ctx), "checkpoint": str(ctx.shared / "sam.pt"),
                 "image_size": 1024}
        extra = [f"method_args.train_iters={ctx.args.persam_f_iters}"] \
            if variant == "persam_f" else []
        return run_ours(ctx, [f"method={variant}", *es.overrides,
                              f"method_args.size={'tiny' if ctx.args.size == 'tiny' else 'real'}",
                              f"method_args.model={json.dumps(model)}", *extra])

    return official if which == "official" else ours


def _arch(ctx: Context) -> str:
    return "tiny" if ctx.args.size == "tiny" else "vit_h"


def persam_comparison(variant: str) -> Comparison:
    return Comparison(variant, "PERSAM_OFFICIAL_DIR", persam_prepare,
                      persam_side(variant, "official"), persam_side(variant, "ours"))


def _module_comparison(module: str) -> Callable[[], Comparison]:
    def make() -> Comparison:
        import importlib

        return importlib.import_module(module).comparison()

    return make


COMPARISONS: dict[str, Callable[[], Comparison]] = {
    "persam": lambda: persam_comparison("persam"),
    "persam_f": lambda: persam_comparison("persam_f"),
    "vrpsam": _module_comparison("official_vrpsam"),
    "matcher": _module_comparison("official_matcher"),
    "fss_sam2": _module_comparison("official_fss_sam2"),
}


# --- driver --------------------------------------------------------------------------------


def run_side(comp: str, side: str, kind: str, args: argparse.Namespace, shared: Path) -> Side:
    """Run one side in a fresh subprocess and read its pickled ``Side`` back."""
    work = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=shared.parent))
    cmd = [sys.executable, __file__, "--_side", side, "--_method", comp, "--_kind", kind,
           "--_shared", str(shared), "--_work", str(work), *args.passthrough]
    env = dict(os.environ)
    if args.threads:  # OpenMP / MKL pools of this process and of its loader workers
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{comp} {kind} {side} side failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    with open(work / "side.pkl", "rb") as fh:
        return Side(**pickle.load(fh))


def child(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    comp = COMPARISONS[args._method]()
    work = Path(args._work)
    ctx = Context(args, _device(args), args._kind, Path(args._shared), work)
    side = (comp.official if args._side == "official" else comp.ours)(ctx)
    with open(work / "side.pkl", "wb") as fh:  # a dict: no class identity across modules
        pickle.dump(dataclasses.asdict(side), fh)


def compare_masks(official: Side, ours: Side) -> tuple[int, int, list[str], dict[str, int]]:
    """(identical, compared, differing keys, near-threshold only) over our episodes. An
    episode whose masks differ only at pixels of ``official.near`` is not differing; it is
    in the last item with its count of such pixels."""
    missing = sorted(set(ours.masks) - set(official.masks))
    if missing:
        raise AssertionError(f"episodes without an official mask: {missing[:5]}")
    differing, near_only = [], {}
    for k, m in ours.masks.items():
        o = official.masks[k]
        if m.shape != o.shape:
            differing.append(k)
            continue
        apart = m != o
        if not apart.any():
            continue
        near = official.near.get(k)
        if near is not None and near.shape == apart.shape and not (apart & ~near).any():
            near_only[k] = int(apart.sum())
        else:
            differing.append(k)
    same = len(ours.masks) - len(differing) - len(near_only)
    return same, len(ours.masks), differing, near_only


def _device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(COMPARISONS), choices=list(COMPARISONS))
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                   help="episode kinds to run (default both)")
    p.add_argument("--distinct-images", action="store_true",
                   help="only the worst case: no image in two episodes (--kinds distinct)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--size", choices=("auto", "tiny", "real"), default="auto",
                   help="auto: real with CUDA, tiny without")
    p.add_argument("--threads", type=int, default=0,
                   help="torch / OpenMP threads of both sides (0: the library default)")
    p.add_argument("--per-class", type=int, default=8,
                   help="recurring: synthetic images per class (a PASCAL-5i fold: ~69)")
    p.add_argument("--episodes", type=int, default=None,
                   help="recurring: episodes (default: as many per image as a PASCAL-5i "
                        "fold's 1000, i.e. 1000 * per-class / 69)")
    p.add_argument("--objects", type=int, default=None,
                   help="distinct: objects (PerSAM: of --images images; others: one episode "
                        "each; default: as many as recurring episodes, PerSAM 3)")
    p.add_argument("--images", type=int, default=4,
                   help="distinct PerSAM: images per object, the reference 00 included")
    p.add_argument("--image-side", type=int, default=240, help="PerSAM image side (px)")
    p.add_argument("--persam-f-iters", type=int, default=1000,
                   help="PerSAM-F training steps on both sides (official: 1000)")
    p.add_argument("--vrpsam-size", type=int, default=256,
                   help="VRP-SAM input size S at tiny size (official 512; images S x S)")
    p.add_argument("--official-batch", type=int, default=2,
                   help="VRP-SAM official validation batch (its --bsz default: 2)")
    p.add_argument("--slow-per-class", type=int, default=4,
                   help="Matcher and FSS-SAM2, recurring: synthetic images per class (their "
                        "official loops take seconds to a minute per episode on a CPU)")
    p.add_argument("--slow-episodes", type=int, default=None,
                   help="Matcher and FSS-SAM2: episodes of each kind (default: as many per "
                        "image as a PASCAL-5i fold at --slow-per-class)")
    p.add_argument("--batch-size", type=int, default=8, help="our run's batch_size")
    p.add_argument("--no-figures", action="store_true",
                   help="skip the figure PerSAM's scripts draw per image (timed apart anyway)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ours-args", nargs="*", default=[],
                   help="extra key=value settings for our runs (e.g. num_workers=0)")
    for hidden in ("--_side", "--_method", "--_kind", "--_shared", "--_work"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size == "auto":
        args.size = "real" if _device(args).type == "cuda" else "tiny"
    if args.distinct_images:
        args.kinds = ["distinct"]
    args.episodes = args.episodes or default_episodes(args.per_class)
    args.slow_episodes = args.slow_episodes or default_episodes(args.slow_per_class)
    args.passthrough = [a for a in (argv if argv is not None else sys.argv[1:])
                        if not a.startswith("--_")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._side:
        child(args)
        return
    threads = args.threads or torch.get_num_threads()
    print(f"device {_device(args)}, size {args.size}, torch {torch.__version__}, {threads} "
          f"thread(s) per side, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} (other processes slow both sides)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-official-") as tmp:
        for name in args.methods:
            comp = COMPARISONS[name]()
            reason = "" if os.environ.get(comp.env) else \
                f"set {comp.env} to an official checkout to compare {name}"
            if not reason and comp.cpu_only and _device(args).type != "cpu":
                reason = f"{comp.cpu_only}; run it with --device cpu"
            if reason:
                print(f"{name}: skipped ({reason})")
                for kind in args.kinds:
                    skipped(_headline_name(name, kind, args), reason,
                            TARGET if kind == "recurring" else None)
                continue
            for kind in args.kinds:
                rows.append(compare(comp, kind, args, Path(tmp) / name / kind))
    print_table(rows)
    print(f"load average after {os.getloadavg()[0]:.2f}")


def compare(comp: Comparison, kind: str, args, folder: Path) -> tuple:
    shared = folder / "shared"
    shared.mkdir(parents=True)
    comp.prepare(Context(args, _device(args), kind, shared, shared))
    reuse = EpisodeSet.load(shared / "episodes.json").reuse()
    official = run_side(comp.name, "official", kind, args, shared)
    ours = run_side(comp.name, "ours", kind, args, shared)
    same, total, differing, near_only = compare_masks(official, ours)
    row = (comp.name, kind, official, ours, same, total, reuse)
    print_row(*row)
    near_note = _near_note(official, near_only)
    if near_note:
        print(f"  {near_note}")
    if differing:
        pixels = {k: _pixels_apart(official.masks[k], ours.masks[k]) for k in differing[:5]}
        raise AssertionError(f"{comp.name} ({kind}): {len(differing)} of {total} masks "
                             f"differ from the official loop's; pixels apart by episode "
                             f"(first five): {pixels}")
    # Conservative: the figures PerSAM's scripts draw per image are left out.
    official_s = official.seconds - official.timing.get("figure_s", 0.0)
    figures = f" without its figures ({official.seconds:.1f} s with)" \
        if official_s != official.seconds else ""
    headline(_headline_name(comp.name, kind, args), official_s / ours.seconds,
             TARGET if kind == "recurring" else None,
             note=f"{same}/{total} masks identical{', ' + near_note if near_note else ''}; "
                  f"{reuse}; official {official_s:.1f} s{figures}, "
                  f"ours {ours.seconds:.1f} s")
    return row


def _near_note(official: Side, near_only: dict[str, int]) -> str:
    """The episodes whose masks differ only near the threshold, said in one line."""
    if not near_only:
        return ""
    return (f"{len(near_only)} differ only at {sum(near_only.values())} pixel(s) with "
            f"{official.near_rule} (float rounding; by episode: {near_only})")


def _pixels_apart(a: np.ndarray, b: np.ndarray) -> str:
    """How two masks differ: the count of differing pixels, or both shapes."""
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}"
    return f"{int((a != b).sum())} of {a.size}"


def _headline_name(name: str, kind: str, args) -> str:
    return f"{name}: whole run vs official, {kind} images ({args.size}, {_device(args)})"


def print_row(name: str, kind: str, official: Side, ours: Side, same: int, total: int,
              reuse: str) -> None:
    figures = official.timing.get("figure_s", 0.0)
    print(f"\n{name} ({kind} images: {reuse})\n  official {official.seconds:8.2f} s   ours "
          f"{ours.seconds:8.2f} s   ratio {official.seconds / ours.seconds:5.2f}x"
          + (f" ({(official.seconds - figures) / ours.seconds:.2f}x without the official "
             f"figures)" if figures else "")
          + f"   masks identical {same}/{total}   mIoU official {official.miou:.2f} / ours "
            f"{ours.miou:.2f}")
    for label, side in (("official", official), ("ours", ours)):
        parts = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in side.timing.items())
        print(f"  {label:8s} {parts}")


def print_table(rows: list[tuple]) -> None:
    if not rows:
        return
    print(f"\n{'method':10s} {'episodes':10s} {'official s':>11s} {'ours s':>9s} "
          f"{'ratio':>7s}  masks identical")
    for name, kind, official, ours, same, total, _ in rows:
        official_s = official.seconds - official.timing.get("figure_s", 0.0)
        print(f"{name:10s} {kind:10s} {official_s:11.2f} {ours.seconds:9.2f} "
              f"{official_s / ours.seconds:6.2f}x  {same}/{total}")


if __name__ == "__main__":
    main()
