"""``refseg-bench leaderboard``: build leaderboard.csv / .md from the run records."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="build leaderboards from run records",
                       description="Build results/leaderboard.csv and results/leaderboard.md "
                       "from results/*/summary.json (never reruns a model) and print it.")
    p.add_argument("--results-dir", default="results", help="where run records are [results]")
    p.add_argument("--dataset", help="only rows of this dataset in the printed table")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from refseg_bench.leaderboard import write

    df = write(Path(args.results_dir))
    console = Console(width=None if sys.stdout.isatty() else 160)
    if df.empty:
        console.print(f"no finished runs under {args.results_dir}/; run `refseg-bench run` first")
        return 0
    shown = df if not args.dataset else df[df["dataset"] == args.dataset]
    shown = shown.dropna(axis=1, how="all")
    if "skipped" in shown and not shown["skipped"].any():
        shown = shown.drop(columns="skipped")
    hidden = ("run_id", "seeds", "random_weights", "split", "scoring")
    cols = [c for c in shown.columns if c not in hidden]
    table = Table(title="leaderboard (mIoU %)", title_justify="left")
    for c in cols:
        numeric = c.startswith("fold") or c in ("mean", "fbiou", "seed_std")
        table.add_column(c, justify="right" if numeric else "left")
    for _, r in shown.iterrows():
        cells = ["" if pd.isna(r[c]) else str(r[c]) for c in cols]
        table.add_row(*cells, style="dim" if r["random_weights"] else None)
    console.print(table)
    console.print(f"written: {args.results_dir}/leaderboard.csv and leaderboard.md (with the "
                  "scoring column); dim rows are on random weights, kept apart there")
    return 0
