"""``refseg-bench report``: a Markdown + PNG report per leaderboard, from run records."""

from __future__ import annotations

HELP = """\
Writes, for every leaderboard (runs with the same dataset, protocol, split, shot,
annotation and scoring), <out>/<setting>/report.md with the leaderboard rows, mean mIoU
with its interval, per-class IoU bars of every run, and each run's best and worst
episodes (reference with its annotation, target, prediction, label), plus <out>/index.md.
Nothing is rerun: predictions are the PNGs runs saved with save_predictions=true, and the
episodes are rebuilt from each run's manifest and dataset.
"""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("report", help="Markdown + PNG report per leaderboard (from records)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", default="results", help="where run records are [results]")
    p.add_argument("--out", help="output folder [<results-dir>/report]")
    p.add_argument("--episodes", type=int, default=3,
                   help="best and worst episodes shown per run [3 each]")
    p.add_argument("--dataset", help="only leaderboards of this dataset")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from refseg_bench.report import write

    if args.episodes < 1:
        from refseg_bench.errors import ConfigError

        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    out = Path(args.out) if args.out else Path(args.results_dir) / "report"
    reports = write(Path(args.results_dir), out, args.episodes, args.dataset)
    if not reports:
        print(f"no finished runs under {args.results_dir}/; run `refseg-bench run` first")
        return 0
    for path in reports:
        print(f"written: {path}")
    print(f"index: {out / 'index.md'}")
    return 0
