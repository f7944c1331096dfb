"""``refseg-bench leaderboard``: build leaderboard.csv / .md from the run records."""

from __future__ import annotations

SETTINGS = {"results_dir": "where run records are [results]",
            "dataset": "only rows of this dataset in the printed table"}


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="build leaderboards from run records",
                       description="Build <results_dir>/leaderboard.csv and leaderboard.md "
                       "from <results_dir>/*/summary.json (never reruns a model) and print "
                       "it. Settings as for `run`: "
                       + "; ".join(f"{k}=... {v}" for k, v in SETTINGS.items()) + ".")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="results_dir=PATH, dataset=NAME")
    p.add_argument("--results-dir", help="the same as results_dir=PATH")
    p.add_argument("--dataset", help="the same as dataset=NAME")
    p.set_defaults(func=run)


def parse_settings(args) -> dict[str, str | None]:
    """``key=value`` settings merged with their ``--option`` spellings (which must agree)."""
    from refseg_bench.errors import ConfigError

    out: dict[str, str | None] = {"results_dir": args.results_dir, "dataset": args.dataset}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or key not in SETTINGS:
            raise ConfigError(f"leaderboard takes {', '.join(k + '=...' for k in SETTINGS)}; "
                              f"got {item!r}")
        if out[key] not in (None, value):
            raise ConfigError(f"{key} is given twice with different values: {out[key]!r} "
                              f"and {value!r}")
        out[key] = value
    out["results_dir"] = out["results_dir"] or "results"
    return out


def run(args) -> int:
    import sys
    from pathlib import Path

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from refseg_bench.leaderboard import write

    settings = parse_settings(args)
    args.results_dir, args.dataset = settings["results_dir"], settings["dataset"]
    df = write(Path(args.results_dir).expanduser())
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
