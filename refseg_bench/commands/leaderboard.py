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
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from refseg_bench.leaderboard import write

    df = write(Path(args.results_dir))
    console = Console()
    if df.empty:
        console.print(f"no finished runs under {args.results_dir}/; run `refseg-bench run` first")
        return 0
    shown = df if not args.dataset else df[df["dataset"] == args.dataset]
    cols = [c for c in shown.columns if c not in ("run_id", "seeds", "random_weights", "split")]
    shown = shown.dropna(axis=1, how="all")
    table = Table(title="leaderboard (mIoU %)", title_justify="left")
    cols = [c for c in cols if c in shown.columns]
    for c in cols:
        numeric = c.startswith("fold") or c in ("mean", "fbiou")
        table.add_column(c, justify="right" if numeric else "left")
    for _, r in shown.iterrows():
        style = "dim" if r["random_weights"] else None
        table.add_row(*["" if (v := r[c]) is None or v != v else str(v) for c in cols], style=style)
    console.print(table)
    console.print(f"written: {args.results_dir}/leaderboard.csv, {args.results_dir}/leaderboard.md"
                  " (dim rows: random weights, kept apart)")
    return 0
