"""Throughput of the harness core on this machine, printed as one table.

Sections (one function each, called in turn by ``main``):
- scorer: episodes/s of the batched torch scorer (``refseg_bench.scorer.episode_totals``)
  against the per-episode NumPy reference (``refseg_bench.scorer_reference``) on
  PASCAL-like episodes (mixed 500x375-ish sizes, 255 boundary bands), at original size and
  at ``--size``; each torch result is checked equal to the reference's.

- harness overhead: a ``proto`` and an ``oracle`` run through the real runner; the runner's
  stage timers split each episode into the method's ``predict`` and everything else.

Timings are wall clock, the best of ``--repeats`` runs, to damp noise from other processes;
the load average is printed with them, since a busy machine slows every row.
Run: ``make perf`` or ``.venv/bin/python benchmarks/perf_core.py --help``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from refseg_bench.scorer import episode_totals
from refseg_bench.scorer_reference import reference_episode_totals

# (H, W) of typical PASCAL VOC images (long side 500).
PASCAL_SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (366, 500), (500, 400),
                (281, 500), (500, 500)]


@dataclass
class Row:
    section: str
    case: str
    episodes_per_s: float  # wall clock
    cpu_us_per_episode: float  # process CPU time, all threads: unaffected by waiting
    speedup: float | None = None  # wall clock, against the section's baseline row


def make_episodes(n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``n`` synthetic episodes: float32 probability maps and uint8 0/1/255 labels.

    Labels are 1-3 ellipses with a 5-pixel 255 band on their boundary (like PASCAL's void
    outline); predictions are a soft, shifted, noisy version of the same shapes.
    """
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for _ in range(n):
        h, w = PASCAL_SIZES[rng.integers(len(PASCAL_SIZES))]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dist = np.full((h, w), np.inf, np.float32)  # distance to the nearest ellipse edge
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
            r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
            dist = np.minimum(dist, (r - 1) * min(ry, rx))
        label = (dist < 0).astype(np.uint8)
        label[np.abs(dist) < 2.5] = 255
        shift = rng.normal(0, 8, size=2)
        noisy = -np.roll(dist, shift.astype(int), axis=(0, 1)) + rng.normal(0, 4, (h, w))
        prob = 1 / (1 + np.exp(-noisy / 3))
        preds.append(torch.from_numpy(prob.astype(np.float32)))
        labels.append(torch.from_numpy(label))
    return preds, labels


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall and best process CPU time of ``repeats`` calls, in seconds (after one
    warm-up call)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def _batched(preds, labels, batch: int, size: int | None) -> np.ndarray:
    out = [episode_totals(preds[i:i + batch], labels[i:i + batch], size=size)
           for i in range(0, len(preds), batch)]
    return torch.cat(out).numpy()


def scorer_section(args: argparse.Namespace) -> list[Row]:
    preds, labels = make_episodes(args.episodes, args.seed)
    n_ref = min(args.reference_episodes, args.episodes)
    rows = []
    for size in (None, args.size):
        where = "original size" if size is None else f"size={size}"
        expected = reference_episode_totals(preds, labels, size=size)
        ref_s, ref_cpu = best_time(lambda s=size: reference_episode_totals(
            preds[:n_ref], labels[:n_ref], size=s), args.repeats)
        ref_rate = n_ref / ref_s
        rows.append(Row("scorer", f"numpy reference, per episode, {where}", ref_rate,
                        1e6 * ref_cpu / n_ref))
        for batch in args.batch_sizes:
            got = _batched(preds, labels, batch, size)
            if not np.array_equal(got, expected):
                raise AssertionError(f"torch scorer differs from the reference ({where}, "
                                     f"batch {batch})")
            sec, cpu = best_time(lambda b=batch, s=size: _batched(preds, labels, b, s),
                                 args.repeats)
            rate = args.episodes / sec
            rows.append(Row("scorer", f"torch batched, batch {batch}, {where}", rate,
                            1e6 * cpu / args.episodes, rate / ref_rate))
    return rows


def overhead_section(args: argparse.Namespace) -> list[str]:
    """Harness overhead per episode (loading, annotation simulation, scoring, writing rows:
    everything but the method's ``predict``) as a fraction of a whole ``proto`` run on the
    synthetic benchmark, measured by the runner's own stage timers."""
    import tempfile

    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("proto", "oracle"):
            over = [f"method={method}", "dataset=synthetic", "fold=0", "progress=false",
                    f"episodes={args.overhead_episodes}", f"results_dir={tmp}"]
            if args.data_root:
                over.append(f"data_root={args.data_root}")
            t = run(resolve_config(over))["timing"]
            n = t["episodes"]
            overhead = t["data_s"] + t["score_s"] + t["write_s"]
            total = overhead + t["predict_s"]
            lines.append(
                f"{method:7s} {n:5d} episodes: predict {1e3 * t['predict_s'] / n:7.2f} ms/ep, "
                f"harness {1e3 * overhead / n:6.2f} ms/ep (data {1e3 * t['data_s'] / n:.2f}, "
                f"score {1e3 * t['score_s'] / n:.2f}, write {1e3 * t['write_s'] / n:.2f}); "
                f"overhead = {100 * overhead / total:5.1f}% of the run")
    return lines


def print_table(rows: list[Row]) -> None:
    width = max(len(r.case) for r in rows)
    print(f"{'section':10s} {'case':{width}s} {'episodes/s':>11s} {'speed-up':>9s} "
          f"{'cpu us/episode':>15s}")
    for r in rows:
        speedup = f"{r.speedup:8.1f}x" if r.speedup is not None else ""
        print(f"{r.section:10s} {r.case:{width}s} {r.episodes_per_s:11.0f} {speedup:>9s} "
              f"{r.cpu_us_per_episode:15.0f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=256,
                        help="episodes scored by the torch scorer per timing (default 256)")
    parser.add_argument("--reference-episodes", type=int, default=64,
                        help="episodes scored by the slow reference per timing (default 64)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64],
                        help="torch scorer batch sizes (default 16 64)")
    parser.add_argument("--size", type=int, default=400,
                        help="square scoring size of the resized case (default 400, HSNet)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; best is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic episodes")
    parser.add_argument("--overhead-episodes", type=int, default=200,
                        help="episodes of the harness-overhead runs (0 skips them; default 200)")
    parser.add_argument("--data-root", default=None,
                        help="data root holding the synthetic benchmark (default: the usual)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.episodes} episodes, best of {args.repeats}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    rows = scorer_section(args)
    print_table(rows)
    if args.overhead_episodes:
        print("\nharness overhead (runner stage timers, synthetic fold 0; oracle's predict is "
              "a label read, so its row is nearly all harness)")
        for line in overhead_section(args):
            print("  " + line)
    print(f"load average after {os.getloadavg()[0]:.2f} (other processes slow these numbers)")


if __name__ == "__main__":
    main()
