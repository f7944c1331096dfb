"""Run every benchmark under ``benchmarks/`` and print one table of their headline ratios.

Every script with a ``__main__`` block here is a benchmark (this one excepted). Each runs in
its own subprocess with the short settings of ``QUICK`` (``--full``: the scripts' own
defaults); its full output streams through, and the ``PERF-RESULT`` / ``PERF-SKIP`` lines it
prints (``perf_report.py``) become rows of the summary: value, target, and whether the
target is met. A GPU section without CUDA prints a skip row with its reason. A script that
fails is listed as failed and the command exits non-zero after the others have run.

Run: ``make perf`` or ``.venv/bin/python benchmarks/perf_summary.py [--full] [--only NAME..]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from perf_report import parse

HERE = Path(__file__).resolve().parent

# Short settings for `make perf` on a small machine (every script still covers all its
# sections); --full uses each script's defaults.
QUICK: dict[str, list[str]] = {
    # 400 episodes: a loader worker's start-up and first batch (~0.1 s) are a run's fixed
    # cost, which 60 episodes of 25 ms would not amortise (a fold runs 1000).
    "perf_core.py": ["--repeats", "3", "--overhead-episodes", "400"],
    # Whole runs need some episodes before a run's fixed costs stop deciding the ratio
    # (ours: about 1.3 s of model build, scorer kernels loaded from Numba's cache, record
    # and plot): the script's own 116 recurring ones (29 for the slow official loops). At
    # 58, VRP-SAM measured 2.99x where 116 give 3.2x.
    "vs_official.py": ["--objects", "2", "--images", "3", "--image-side", "160",
                       "--persam-f-iters", "100", "--slow-per-class", "2",
                       "--slow-episodes", "29"],
    "perf_embedding_cache.py": ["--episodes", "200"],
    "perf_coco_prepare.py": ["--sizes", "5000", "20000"],
    "baselines_synthetic.py": ["--episodes", "40", "--folds", "0"],
    "perf_persam.py": ["--episodes", "4", "--warmup", "1", "--train-iters", "200"],
    "perf_vrpsam.py": ["--steps", "5", "--warmup", "1", "--episodes", "16"],
    "perf_fss_sam2.py": ["--steps", "3", "--warmup", "1", "--episodes", "8"],
    "perf_cavsam.py": ["--episodes", "1"],
    "perf_matcher.py": ["--episodes", "2", "--fold", "2", "2", "4"],
    "perf_models_gpu.py": [],
}


def benchmark_scripts() -> list[Path]:
    """The scripts under ``benchmarks/`` that run as programs, this one excluded; the
    ``QUICK`` ones first, in its order."""
    found = [p for p in sorted(HERE.glob("*.py")) if p.name != Path(__file__).name
             and 'if __name__ == "__main__":' in p.read_text()]
    order = list(QUICK)
    return sorted(found, key=lambda p: order.index(p.name) if p.name in order else len(order))


def run_script(path: Path, full: bool) -> tuple[int, str, float]:
    """Run one benchmark, echoing its output; returns (exit status, output, seconds)."""
    args = [] if full else QUICK.get(path.name, [])
    print(f"\n===== {path.name} {' '.join(args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(path), *args], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return proc.wait(), "".join(lines), time.perf_counter() - start


def verdict(row: dict) -> str:
    if row["status"] == "skipped":
        return "skipped"
    if row.get("target") is None:
        return "-"
    met = row["value"] >= row["target"] if row.get("higher", True) else \
        row["value"] <= row["target"]
    return "met" if met else "NOT met"


def print_summary(results: list[tuple[str, int, list[dict], float]]) -> None:
    rows = [(script, row) for script, _, parsed, _ in results for row in parsed]
    width = max([len(row["name"]) for _, row in rows] + [20])
    print(f"\n===== summary (load average now {os.getloadavg()[0]:.2f}; measured on this "
          "machine, other processes slow every row)")
    print(f"{'headline':<{width}}  {'value':>10}  {'target':>9}  {'':>7}  script")
    for script, row in rows:
        unit = row.get("unit", "")
        if row["status"] == "skipped":
            value, note = "", f"  ({row['reason']})"
        else:
            value, note = f"{row['value']:.2f}{unit}", ""
        target = row.get("target")
        cmp = "" if target is None else ("<=" if not row.get("higher", True) else ">=")
        target = "" if target is None else f"{cmp}{target:g}{unit}"
        print(f"{row['name']:<{width}}  {value:>10}  {target:>9}  {verdict(row):>7}  "
              f"{script}{note}")
    for script, status, parsed, seconds in results:
        if status != 0:
            print(f"FAILED: {script} exited with status {status} after {seconds:.0f} s")
        elif not parsed:
            print(f"note: {script} printed no headline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the scripts' own default settings")
    p.add_argument("--only", nargs="+", default=None, help="script names to run")
    args = p.parse_args(argv)
    results = []
    for path in benchmark_scripts():
        if args.only and path.name not in args.only and path.stem not in args.only:
            continue
        status, output, seconds = run_script(path, args.full)
        results.append((path.name, status, parse(output), seconds))
    print_summary(results)
    return 1 if any(status != 0 for _, status, _, _ in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
