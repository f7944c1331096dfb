"""Whole runs against the official evaluation loops: same episodes, same weights, same masks.

For each method, one run of the official evaluation loop (replayed from its checkout with
its own modules: ``official_persam.py``, ``official_vrpsam.py`` say exactly what is
replayed and what had to be replaced) and one run of ``refseg-bench run`` on the same
generated dataset and episodes, with the same weight files. Each side runs in a fresh
subprocess (no module clashes, no warm caches), timed from inside: the official loop
from its first image read to its mIoU, ours the whole ``run()`` (dataset lists, manifest,
model build, loop, scoring, record and plots). The masks of every scored episode are
compared and must be identical; the table prints both wall times and their ratio. The
headline ratio leaves out the figure PerSAM's scripts draw and save for every image (timed
apart): a conservative comparison of the evaluation work.

Official checkouts come from environment variables (a method whose variable is unset is
skipped with a message): ``PERSAM_OFFICIAL_DIR`` (github.com/ZrrSkywalker/Personalize-SAM)
for ``persam`` and ``persam_f``, ``VRPSAM_OFFICIAL_DIR`` (github.com/syp2ysy/VRP-SAM) for
``vrpsam``. Sizes: on the CPU the tiny random models (``--size tiny``); with CUDA the real
architectures with random weights (``--size real``: SAM ViT-H; the speed does not depend
on the values), both on the chosen device.

Adding a method (e.g. Matcher, FSS-SAM2) is one ``Comparison`` in ``COMPARISONS``: its
name, the environment variable of its checkout, and three functions of a ``Context``:
``prepare`` (write the shared inputs, data and weight files, under ``ctx.shared``),
``official`` and ``ours`` (run one side and return a ``Side``: wall seconds, the mIoU, a
timing breakdown, and the masks as ``{episode key: (H, W) bool}``). The keys of the two
sides must name the same episodes (``persam_comparison`` and ``vrpsam_comparison`` are
the worked examples); this script does the subprocesses, the mask check and the table.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from perf_report import headline, skipped

TARGET = 3.0  # x: our whole run against the official loop


@dataclass
class Context:
    """What every side function gets: the parsed options, the device, a private working
    folder of this side (``work``) and the inputs written once by ``prepare`` (``shared``)."""

    args: argparse.Namespace
    device: torch.device
    shared: Path
    work: Path


@dataclass
class Side:
    """One side's result: ``seconds`` (wall), ``miou`` (percent), ``masks`` per episode key,
    and a ``timing`` breakdown (seconds by stage) printed under the table."""

    seconds: float
    miou: float
    masks: dict[str, np.ndarray]
    timing: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    name: str
    env: str
    prepare: Callable[[Context], None]
    official: Callable[[Context], Side]
    ours: Callable[[Context], Side]


# --- PerSAM / PerSAM-F ---------------------------------------------------------------------


def persam_prepare(ctx: Context) -> None:
    """A PerSeg-layout dataset and a SAM weight file."""
    from official_data import write_perseg

    write_perseg(ctx.shared / "perseg", ctx.args.objects, ctx.args.images,
                 ctx.args.image_side, seed=ctx.args.seed)
    arch = "tiny" if ctx.args.size == "tiny" else "vit_h"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.args.seed)
        from refseg_bench.models.sam import build_sam

        sam = build_sam(arch, image_size=1024)  # the official code assumes a 64x64 grid
    torch.save(sam.state_dict(), ctx.shared / "sam.pt")


def persam_side(variant: str, which: str) -> Callable[[Context], Side]:
    def official(ctx: Context) -> Side:
        from official_persam import run_official

        out = run_official(variant, ctx.shared / "perseg", ctx.shared / "sam.pt",
                           ctx.work / "outputs", arch=_arch(ctx), image_size=1024,
                           device=ctx.device, train_iters=ctx.args.persam_f_iters,
                           figures=not ctx.args.no_figures)
        seconds = out["timing"]["total_s"]  # from the first image read to the mIoU
        masks = {f"{p.parent.name}/{p.stem}": _png_mask(p)
                 for p in (ctx.work / "outputs").rglob("*.png")}
        return Side(seconds, out["miou"], masks, out["timing"])

    def ours(ctx: Context) -> Side:
        model = {"sam": _arch(ctx), "checkpoint": str(ctx.shared / "sam.pt"),
                 "image_size": 1024}
        extra = [f"method_args.train_iters={ctx.args.persam_f_iters}"] \
            if variant == "persam_f" else []
        return run_ours(ctx, [f"method={variant}", "dataset=perseg",
                              f"dataset_args.root={ctx.shared / 'perseg'}",
                              f"method_args.size={'tiny' if ctx.args.size == 'tiny' else 'real'}",
                              f"method_args.model={json.dumps(model)}", *extra])

    return official if which == "official" else ours


def _arch(ctx: Context) -> str:
    return "tiny" if ctx.args.size == "tiny" else "vit_h"


def persam_comparison(variant: str) -> Comparison:
    return Comparison(variant, "PERSAM_OFFICIAL_DIR", persam_prepare,
                      persam_side(variant, "official"), persam_side(variant, "ours"))


# --- VRP-SAM ------------------------------------------------------------------------------


def vrpsam_comparison() -> Comparison:
    import official_vrpsam as v

    return Comparison("vrpsam", "VRPSAM_OFFICIAL_DIR", v.prepare, v.official, v.ours)


COMPARISONS: dict[str, Callable[[], Comparison]] = {
    "persam": lambda: persam_comparison("persam"),
    "persam_f": lambda: persam_comparison("persam_f"),
    "vrpsam": vrpsam_comparison,
}


# --- our side, shared by every method ----------------------------------------------------


def run_ours(ctx: Context, overrides: list[str]) -> Side:
    """``refseg-bench run`` in this process with ``overrides`` (method, dataset, options)
    plus the benchmark's run settings; masks read back from the saved predictions and
    keyed by the episode's query item (``<object>/<image>`` for PerSeg) unless the
    comparison keys by episode index (``key="index"``)."""
    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    cfg = resolve_config([*overrides, f"results_dir={ctx.work / 'results'}", "run_id=ours",
                          "progress=false", "save_predictions=true", f"device={ctx.device}",
                          f"batch_size={ctx.args.batch_size}", "fold=0",
                          *ctx.args.ours_args])
    start = time.perf_counter()
    summary = run(cfg)
    seconds = time.perf_counter() - start
    return Side(seconds, summary["mean_miou"], saved_masks(ctx.work / "results" / "ours"),
                {**summary["timing"], "num_workers": summary["num_workers"]})


def saved_masks(run_dir: Path, key: str = "query") -> dict[str, np.ndarray]:
    """``{query item or episode index: mask}`` from a run's saved prediction PNGs."""
    import pandas as pd

    rows = pd.read_csv(run_dir / "episodes.csv")
    out = {}
    for png in (run_dir / "predictions").rglob("*.png"):
        row = rows[(rows["index"] == int(png.stem)) & (rows["fold"] == 0)].iloc[0]
        out[str(row[key]) if key != "index" else png.stem] = _png_mask(png)
    return out


def _png_mask(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 0


# --- driver --------------------------------------------------------------------------------


def run_side(comp: str, side: str, args: argparse.Namespace, shared: Path) -> Side:
    """Run one side in a fresh subprocess and read its pickled ``Side`` back."""
    work = Path(tempfile.mkdtemp(prefix=f"{comp}-{side}-", dir=shared.parent))
    cmd = [sys.executable, __file__, "--_side", side, "--_method", comp, "--_shared",
           str(shared), "--_work", str(work), *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{comp} {side} side failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    with open(work / "side.pkl", "rb") as fh:
        return Side(**pickle.load(fh))


def child(args: argparse.Namespace) -> None:
    comp = COMPARISONS[args._method]()
    work = Path(args._work)
    ctx = Context(args, _device(args), Path(args._shared), work)
    side = (comp.official if args._side == "official" else comp.ours)(ctx)
    with open(work / "side.pkl", "wb") as fh:  # a dict: no class identity across modules
        pickle.dump(dataclasses.asdict(side), fh)


def compare_masks(official: Side, ours: Side) -> tuple[int, int, list[str]]:
    """(identical, compared, differing keys) over our episodes."""
    missing = sorted(set(ours.masks) - set(official.masks))
    if missing:
        raise AssertionError(f"episodes without an official mask: {missing[:5]}")
    differing = [k for k, m in ours.masks.items()
                 if m.shape != official.masks[k].shape or not np.array_equal(m, official.masks[k])]
    return len(ours.masks) - len(differing), len(ours.masks), differing


def _device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(COMPARISONS), choices=list(COMPARISONS))
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--size", choices=("auto", "tiny", "real"), default="auto",
                   help="auto: real with CUDA, tiny without")
    p.add_argument("--objects", type=int, default=3, help="PerSeg objects (default 3)")
    p.add_argument("--images", type=int, default=4,
                   help="images per object, the reference 00 included (default 4)")
    p.add_argument("--image-side", type=int, default=240, help="generated image side (px)")
    p.add_argument("--persam-f-iters", type=int, default=1000,
                   help="PerSAM-F training steps on both sides (official: 1000)")
    p.add_argument("--episodes", type=int, default=12, help="VRP-SAM episodes (default 12)")
    p.add_argument("--vrpsam-size", type=int, default=256,
                   help="VRP-SAM input size S (official 512; images are generated S x S)")
    p.add_argument("--official-batch", type=int, default=2,
                   help="VRP-SAM official validation batch (its --bsz default: 2)")
    p.add_argument("--batch-size", type=int, default=8, help="our run's batch_size")
    p.add_argument("--no-figures", action="store_true",
                   help="skip the figure PerSAM's scripts draw per image (timed apart anyway)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ours-args", nargs="*", default=[],
                   help="extra key=value settings for our runs (e.g. num_workers=0)")
    for hidden in ("--_side", "--_method", "--_shared", "--_work"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size == "auto":
        args.size = "real" if _device(args).type == "cuda" else "tiny"
    args.passthrough = [a for a in (argv if argv is not None else sys.argv[1:])
                        if not a.startswith("--_")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._side:
        child(args)
        return
    print(f"device {_device(args)}, size {args.size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-official-") as tmp:
        for name in args.methods:
            comp = COMPARISONS[name]()
            if not os.environ.get(comp.env):
                reason = f"set {comp.env} to an official checkout to compare {name}"
                print(f"{name}: skipped ({reason})")
                skipped(f"{name}: whole run, ours vs official", reason, TARGET)
                continue
            shared = Path(tmp) / name / "shared"
            shared.mkdir(parents=True)
            comp.prepare(Context(args, _device(args), shared, shared))
            official = run_side(name, "official", args, shared)
            ours = run_side(name, "ours", args, shared)
            same, total, differing = compare_masks(official, ours)
            rows.append((name, official, ours, same, total))
            _print_row(name, official, ours, same, total)
            if differing:
                raise AssertionError(f"{name}: {len(differing)} of {total} masks differ from "
                                     f"the official loop's, e.g. {differing[:3]}")
            # Conservative: the figures PerSAM's scripts draw per image are left out.
            official_s = official.seconds - official.timing.get("figure_s", 0.0)
            figures = f" without its figures ({official.seconds:.1f} s with)" \
                if official_s != official.seconds else ""
            headline(f"{name}: whole run, ours vs official ({args.size}, {_device(args)})",
                     official_s / ours.seconds, TARGET,
                     note=f"{total} masks identical; official {official_s:.1f} s{figures}, "
                          f"ours {ours.seconds:.1f} s")
    print(f"load average after {os.getloadavg()[0]:.2f}")


def _print_row(name: str, official: Side, ours: Side, same: int, total: int) -> None:
    figures = official.timing.get("figure_s", 0.0)
    print(f"\n{name}: official {official.seconds:8.2f} s   ours {ours.seconds:8.2f} s   "
          f"ratio {official.seconds / ours.seconds:5.2f}x"
          + (f" ({(official.seconds - figures) / ours.seconds:.2f}x without the official "
             f"figures)" if figures else "")
          + f"   masks identical {same}/{total}   mIoU official {official.miou:.2f} / ours "
            f"{ours.miou:.2f}")
    for label, side in (("official", official), ("ours", ours)):
        parts = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in side.timing.items())
        print(f"  {label:8s} {parts}")


if __name__ == "__main__":
    main()
