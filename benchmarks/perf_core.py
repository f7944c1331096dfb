"""Throughput of the harness core on this machine, printed as one table.

Sections (one function each, called in turn by ``main``):
- scorer: episodes/s of ``refseg_bench.scorer.episode_totals`` against the per-episode
  NumPy reference (``refseg_bench.scorer_reference``) on PASCAL-like episodes (mixed
  500x375-ish sizes, 255 boundary bands), at original size and at ``--size``. The
  reference reads float32 probabilities; the scorer is timed on the same values handed
  over as float32 probabilities, as float16 probabilities (the values are generated
  exactly representable in float16) and as bool masks (what a method with a binary
  output, e.g. PerSAM, hands over). Every result is checked equal to the reference's.
  Beside each original-size row, a floor: one NumPy reduction over each prediction's and
  label's bytes, what reading the inputs once costs (per-call overhead included), as a
  ratio to the reference too: about the most a one-pass scorer can reach.
- scorer on the GPU (skipped without CUDA): episodes/s and the bytes of prediction and
  label read per second, against a device-to-device copy's bandwidth.
- harness overhead: a ``proto`` and an ``oracle`` run through the real runner; the runner's
  stage timers split each episode into the method's ``predict`` and everything else, with
  loader workers at the run default and with none (``num_workers=0``).

Timings are the best of ``--repeats`` runs, to damp noise from other processes; wall clock
and process CPU time are both printed (on a shared machine CPU time is the steadier one,
and the headline speed-ups use it), with the load average.
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
from perf_report import headline, skipped

from refseg_bench.scorer import episode_totals
from refseg_bench.scorer_reference import reference_episode_totals

SCORER_TARGET = 10.0  # x the per-episode NumPy loop, CPU, original size
OVERHEAD_TARGET = 5.0  # % of a proto run spent outside predict

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
    cpu_speedup: float | None = None  # CPU time, against the section's baseline row


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
        # float16-representable values: the float16 copy scores exactly like the float32 one
        preds.append(torch.from_numpy(prob.astype(np.float16).astype(np.float32)))
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
    handed_over = {"float32 probabilities": preds,
                   "float16 probabilities": [p.half() for p in preds],
                   "bool masks": [p > 0.5 for p in preds]}
    n_ref = min(args.reference_episodes, args.episodes)
    rows = []
    for size in (None, args.size):
        where = "original size" if size is None else f"size={size}"
        expected = reference_episode_totals(preds, labels, size=size)
        ref_s, ref_cpu = best_time(lambda s=size: reference_episode_totals(
            preds[:n_ref], labels[:n_ref], size=s), args.repeats)
        rows.append(Row("scorer", f"numpy reference, float32, {where}", n_ref / ref_s,
                        1e6 * ref_cpu / n_ref))
        kinds = handed_over if size is None else {"float32 probabilities": preds}
        for kind, inputs in kinds.items():
            got = _batched(inputs, labels, args.batch_size, size)
            if not np.array_equal(got, expected):
                raise AssertionError(f"scorer differs from the reference ({kind}, {where})")
            sec, cpu = best_time(lambda x=inputs, s=size: _batched(x, labels, args.batch_size,
                                                                   s), args.repeats)
            rows.append(Row("scorer", f"batch {args.batch_size}, {kind}, {where}",
                            args.episodes / sec, 1e6 * cpu / args.episodes,
                            ref_s / n_ref / (sec / args.episodes),
                            ref_cpu / n_ref / (cpu / args.episodes)))
            if size is None:
                sec, cpu = best_time(lambda x=inputs: _read_once(x, labels), args.repeats)
                rows.append(Row("scorer", f"floor: read once, {kind}, {where}",
                                args.episodes / sec, 1e6 * cpu / args.episodes,
                                ref_s / n_ref / (sec / args.episodes),
                                ref_cpu / n_ref / (cpu / args.episodes)))
    return rows


def _read_once(preds: list[torch.Tensor], labels: list[torch.Tensor]) -> None:
    """One NumPy max over the bytes of each prediction and label: the memory reads and
    per-call overhead that any NumPy scorer of these inputs pays at least."""
    for p, lab in zip(preds, labels, strict=True):
        p.numpy().view(np.uint8).max()
        lab.numpy().max()


def scorer_headlines(rows: list[Row]) -> None:
    for r in rows:
        if r.case.startswith("batch") and "original size" in r.case:
            kind = r.case.split(", ")[1]
            headline(f"scorer vs per-episode NumPy, {kind}, original size (CPU time)",
                     r.cpu_speedup, SCORER_TARGET,
                     note=f"wall {r.speedup:.1f}x; {r.cpu_us_per_episode:.0f} us/episode")


def gpu_scorer_section(args: argparse.Namespace) -> None:
    """Scorer throughput on the GPU (original size) against the device's memory bandwidth:
    bytes of prediction and label read per second, beside a device-to-device copy's."""
    if not torch.cuda.is_available():
        print("\nGPU scorer section skipped: CUDA is not available.")
        skipped("scorer on the GPU: fraction of copy bandwidth, bool masks", "no CUDA device")
        return
    dev = torch.device("cuda")
    preds, labels = make_episodes(args.episodes, args.seed)
    expected = reference_episode_totals(preds, labels)
    labels = [lab.to(dev) for lab in labels]
    src = torch.empty(1 << 28, dtype=torch.uint8, device=dev)  # 256 MiB
    dst = torch.empty_like(src)
    copy_s = _cuda_time(lambda: dst.copy_(src), args.repeats)
    copy_bw = 2 * src.numel() / copy_s  # read + write
    props = torch.cuda.get_device_properties(dev)
    clock, bus = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    spec = f", spec peak {2 * clock * 1e3 * bus / 8 / 1e9:.0f} GB/s" if clock and bus else ""
    print(f"\nscorer on {props.name}: device copy {copy_bw / 1e9:.0f} GB/s{spec}; batch "
          f"{args.batch_size}, original size")
    for kind, convert in (("float32 probabilities", lambda p: p),
                          ("float16 probabilities", lambda p: p.half()),
                          ("bool masks", lambda p: p > 0.5)):
        inputs = [convert(p).to(dev) for p in preds]
        got = torch.cat([episode_totals(inputs[i:i + args.batch_size],
                                        labels[i:i + args.batch_size])
                         for i in range(0, len(inputs), args.batch_size)]).cpu().numpy()
        if not np.array_equal(got, expected):
            raise AssertionError(f"GPU scorer differs from the reference ({kind})")
        sec = _cuda_time(lambda x=inputs: [episode_totals(x[i:i + args.batch_size],
                                                          labels[i:i + args.batch_size])
                                           for i in range(0, len(x), args.batch_size)],
                         args.repeats)
        read = sum(p.numel() * p.element_size() + lab.numel()
                   for p, lab in zip(inputs, labels, strict=True))
        print(f"  {kind:22s} {args.episodes / sec:9.0f} episodes/s, reads {read / sec / 1e9:6.1f}"
              f" GB/s = {100 * read / sec / copy_bw:5.1f}% of the copy bandwidth")
        headline(f"scorer on the GPU: fraction of copy bandwidth, {kind}",
                 100 * read / sec / copy_bw, unit="%",
                 note=f"{args.episodes / sec:.0f} episodes/s on {props.name}")


def _cuda_time(fn, repeats: int) -> float:
    """Best seconds of ``repeats`` CUDA-synchronised calls, after one warm-up."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def overhead_section(args: argparse.Namespace) -> list[dict]:
    """Harness overhead per episode (waiting for loaded episodes, scoring, writing rows:
    everything but the method's ``predict``) of ``proto`` and ``oracle`` runs on the
    synthetic benchmark, with the run's default loader workers and with none, measured by
    the runner's own stage timers."""
    import tempfile

    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("proto", "oracle"):
            for workers in ("auto", 0):
                over = [f"method={method}", "dataset=synthetic", "fold=0", "progress=false",
                        f"episodes={args.overhead_episodes}", f"results_dir={tmp}",
                        f"num_workers={workers}", f"run_id={method}-{workers}"]
                if args.data_root:
                    over.append(f"data_root={args.data_root}")
                summary = run(resolve_config(over))
                t = summary["timing"]
                out.append({"method": method, "workers": summary["num_workers"], **t,
                            "wall_s": summary["elapsed_s"]})
    return out


def print_overhead(rows: list[dict]) -> None:
    for r in rows:
        n = r["episodes"]
        harness = r["data_s"] + r["score_s"] + r["write_s"]
        share = 100 * harness / (harness + r["predict_s"])
        print(f"  {r['method']:6s} workers={r['workers']}: {n} episodes, "
              f"predict {1e3 * r['predict_s'] / n:7.2f} ms/ep, harness {1e3 * harness / n:6.2f}"
              f" ms/ep (data wait {1e3 * r['data_s'] / n:.2f}, score "
              f"{1e3 * r['score_s'] / n:.2f}, write {1e3 * r['write_s'] / n:.2f}) = "
              f"{share:5.1f}% of the run; {n / (harness + r['predict_s']):6.1f} episodes/s")


def overhead_headlines(rows: list[dict]) -> None:
    by = {(r["method"], r["workers"] > 0): r for r in rows}
    proto = by.get(("proto", True))
    if proto is not None:
        harness = proto["data_s"] + proto["score_s"] + proto["write_s"]
        headline("harness share of a proto run (loader workers on)",
                 100 * harness / (harness + proto["predict_s"]), OVERHEAD_TARGET, unit="%",
                 higher=False, note=f"{proto['workers']} workers, {proto['episodes']} episodes")
    on, off = by.get(("oracle", True)), by.get(("oracle", False))
    if on is not None and off is not None:
        def rate(r):
            return r["episodes"] / (r["data_s"] + r["predict_s"] + r["score_s"] + r["write_s"])
        headline("oracle run throughput, loader workers on vs off", rate(on) / rate(off),
                 note=f"{rate(on):.0f} vs {rate(off):.0f} episodes/s; "
                      f"{on['workers']} workers")


def print_table(rows: list[Row]) -> None:
    width = max(len(r.case) for r in rows)
    print(f"{'section':8s} {'case':{width}s} {'episodes/s':>11s} {'wall x':>7s} "
          f"{'cpu us/ep':>10s} {'cpu x':>6s}")
    for r in rows:
        wall = f"{r.speedup:6.1f}x" if r.speedup is not None else ""
        cpu = f"{r.cpu_speedup:5.1f}x" if r.cpu_speedup is not None else ""
        print(f"{r.section:8s} {r.case:{width}s} {r.episodes_per_s:11.0f} {wall:>7s} "
              f"{r.cpu_us_per_episode:10.0f} {cpu:>6s}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=256,
                        help="episodes scored by the torch scorer per timing (default 256)")
    parser.add_argument("--reference-episodes", type=int, default=64,
                        help="episodes scored by the slow reference per timing (default 64)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="episodes per scorer call (default 16)")
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
    scorer_headlines(rows)
    gpu_scorer_section(args)
    if args.overhead_episodes:
        print("\nharness overhead (runner stage timers, synthetic fold 0; oracle's predict is "
              "a label read, so its row is nearly all harness)")
        rows = overhead_section(args)
        print_overhead(rows)
        overhead_headlines(rows)
    print(f"load average after {os.getloadavg()[0]:.2f} (other processes slow these numbers)")


if __name__ == "__main__":
    main()
