"""``refseg-bench compare RUN_A RUN_B``: paired comparison of two runs on the same episodes."""

from __future__ import annotations

HELP = """\
Pairs two finished runs episode by episode (they must have drawn the same manifests:
same dataset, split, shot, folds, protocol, episode count and seed; method, its options
and the annotation kind may differ) and reports B - A: per fold and overall mIoU
difference with a paired class-stratified bootstrap interval, per-class IoU with the
per-episode win/tie/loss counts of B against A, and the episodes that changed most.
Writes compare.md, episodes.csv, folds.csv, classes.csv and comparison.json.

  refseg-bench compare results/proto_..._mask_xxxx results/proto_..._box_yyyy
"""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("compare", help="paired comparison of two runs on the same episodes",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", metavar="RUN_A", help="run directory, or run id under --results-dir")
    p.add_argument("run_b", metavar="RUN_B", help="run directory, or run id under --results-dir")
    p.add_argument("--results-dir", default="results", help="where run ids are looked up")
    p.add_argument("--out", help="output folder [<results-dir>/compare/<A>__vs__<B>]")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates [2000]")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed [0]")
    p.add_argument("--level", type=float, default=0.95, help="interval level [0.95]")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from rich.console import Console

    from refseg_bench import compare as cmp

    a = cmp.load_run(args.run_a, args.results_dir)
    b = cmp.load_run(args.run_b, args.results_dir)
    result = cmp.compare(a, b, n_boot=args.n_boot, seed=args.seed, level=args.level)
    out = Path(args.out) if args.out else (Path(args.results_dir) / "compare" /
                                           f"{a.path.name}__vs__{b.path.name}")
    paths = cmp.write(result, out)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    print_comparison(console, result)
    console.print(f"written to {out}/: {', '.join(p.name for p in paths)}", soft_wrap=True)
    return 0


def print_comparison(console, c) -> None:
    from rich.table import Table

    from refseg_bench.compare import headline, setting, tables

    console.print(f"A: {c.a.path.name}: {c.a.label}", soft_wrap=True)
    console.print(f"B: {c.b.path.name}: {c.b.label}", soft_wrap=True)
    console.print(setting(c), soft_wrap=True)
    for t in tables(c):
        table = Table(title=t.title, title_justify="left")
        for name, numeric in zip(t.header, t.numeric, strict=True):
            table.add_column(name, justify="right" if numeric else "left")
        for row in t.rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"[bold]{headline(c)}[/bold]", soft_wrap=True)
