"""``refseg-bench regress``: every registered method on a small sampled run, compared with
its golden record; ``--update`` rewrites the goldens and shows the diff."""

from __future__ import annotations

HELP = """\
Runs every method of configs/regress.yaml (its tiny configuration, on the CPU, one thread,
pinned kernels) on a few folds and a few dozen episodes of the synthetic benchmark, comparing
every episode's intersection/union totals with configs/goldens/<method>.json, exactly.
Prints the deltas per method and fold; exits 1 naming the method, fold and episodes that
moved. Trained methods train once (a tiny budget) and reuse those weights from
<workdir>/checkpoints while no source file of the harness changes.

  refseg-bench regress                              check every method
  refseg-bench regress --method proto               check one method
  refseg-bench regress --update                     accept: rewrite goldens, show the diff
  refseg-bench regress --update --method NAME       add or refresh one method's golden
"""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("regress", help="check every method against its golden record",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", action="append", metavar="NAME",
                   help="only this method (repeatable); default: every method in the plan")
    p.add_argument("--update", action="store_true",
                   help="rewrite the golden records of the methods run and show the diff")
    p.add_argument("--workdir", default="results/regress",
                   help="where runs and the cached trained weights go [results/regress]")
    p.add_argument("--retrain", action="store_true",
                   help="discard cached trained weights in the workdir and train again "
                   "(done by itself when any source file changed)")
    p.add_argument("--goldens", help="golden record folder [configs/goldens of this checkout]")
    p.add_argument("--plan", help="regression plan [configs/regress.yaml]")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    from rich.console import Console

    from refseg_bench import regress
    from refseg_bench.regress_check import failure_message

    regress.pin_cpu_paths()  # before torch's first operation, or it has no effect
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    plan = regress.load_plan(args.plan)
    golden_dir = Path(args.goldens) if args.goldens else regress.default_golden_dir()
    workdir = Path(args.workdir)
    missing = [] if args.method else _unplanned_methods(plan)
    dropped = regress.prepare_cache(workdir, args.retrain)
    if dropped:
        console.print(f"cached trained weights in {workdir / 'checkpoints'} discarded "
                      f"({dropped}): trained methods train again")
    started = time.perf_counter()
    records = _run_cases(console, regress.cases(plan, args.method), workdir)
    checks, goldens = _check(records, golden_dir)
    print_table(console, checks)
    console.print(f"{len(checks)} folds in {time.perf_counter() - started:.0f} s "
                  f"(golden records: {golden_dir})")
    if args.update:
        for method, cases in records.items():
            path = regress.golden_path(golden_dir, method)
            old = regress.write_golden(path, regress.golden_record(method, cases))
            show_diff(console, path, old, path.read_text())
        return _report_unplanned(console, missing)
    failed = [c for c in checks if not c.passed]
    if failed:
        console.print(failure_message(checks, _environment_note(goldens)), style="red",
                      markup=False)
        _report_unplanned(console, missing)
        return 1
    console.print("[green]regress: every episode matches its golden record[/green]")
    return _report_unplanned(console, missing)


def _run_cases(console, cases, workdir) -> dict[str, dict[str, dict]]:
    """method -> annotation -> case record, running ``cases`` in order."""
    import time

    from refseg_bench.regress import run_case

    records: dict[str, dict[str, dict]] = {}
    for case in cases:
        t = time.perf_counter()
        console.print(f"[bold]regress[/bold] {case.method} ({case.annotation}) ...")
        records.setdefault(case.method, {})[case.annotation] = run_case(case, workdir)
        console.print(f"  done in {time.perf_counter() - t:.1f} s")
    return records


def _check(records: dict, golden_dir) -> tuple[list, dict]:
    """Per-fold checks of every record, and the golden records read (None: none yet)."""
    from refseg_bench.regress import golden_path, read_golden
    from refseg_bench.regress_check import check_case

    checks, goldens = [], {}
    for method, cases in records.items():
        goldens[method] = read_golden(golden_path(golden_dir, method))
        for annotation, record in cases.items():
            golden_case = (goldens[method] or {}).get("cases", {}).get(annotation)
            checks += check_case(method, annotation, golden_case, record)
    return checks, goldens


def _unplanned_methods(plan: dict) -> list[str]:
    from refseg_bench.registry import METHODS, load_builtin_entries

    load_builtin_entries()
    return [m for m in METHODS.names() if m not in plan["methods"]]


def _report_unplanned(console, missing: list[str]) -> int:
    if not missing:
        return 0
    console.print(f"[red]registered methods without a regression entry: {', '.join(missing)}. "
                  "Add each one's `tiny` configuration to configs/regress.yaml, then "
                  "`refseg-bench regress --update --method NAME`.[/red]")
    return 1


def _environment_note(goldens: dict[str, dict | None]) -> str | None:
    """Library versions that differ from those the goldens were made with."""
    from refseg_bench.regress import environment

    now = environment()
    diffs = set()
    for golden in goldens.values():
        env = (golden or {}).get("environment", {})
        for name, version in (env.get("packages") or {}).items():
            if now["packages"].get(name) != version:
                diffs.add(f"{name} {version} -> {now['packages'].get(name)}")
        if env.get("cpu_capability") not in (None, now["cpu_capability"]):
            diffs.add(f"CPU kernels {env['cpu_capability']} -> {now['cpu_capability']}")
    if not diffs:
        return None
    return ("The environment differs from the golden records' (" + ", ".join(sorted(diffs)) +
            "): if only that moved the numbers, accept them with --update and say so.")


def print_table(console, checks) -> None:
    from rich.table import Table

    table = Table(title="regression against golden records", title_justify="left")
    for col in ("method", "annotation", "fold", "episodes", "moved", "golden mIoU", "mIoU now",
                "delta", "max |dIoU|", "status"):
        table.add_column(col, justify="left" if col in ("method", "annotation", "status")
                         else "right")
    for c in checks:
        delta = (f"{c.miou_now - c.miou_golden:+.4f}"
                 if c.miou_now is not None and c.miou_golden is not None else "")
        status = ("[green]ok[/green]" if c.passed else "[yellow]new[/yellow]"
                  if c.miou_golden is None else "[red]MOVED[/red]" if c.moved
                  else "[red]changed[/red]")
        table.add_row(c.method, c.annotation, c.fold, str(c.n_episodes), str(len(c.moved)),
                      _num(c.miou_golden), _num(c.miou_now), delta,
                      f"{c.max_iou_change:.2f}" if c.moved else "", status)
    console.print(table)


def _num(value) -> str:
    return "" if value is None else f"{value:.2f}"


def show_diff(console, path, old: str, new: str, limit: int = 80) -> None:
    """The unified diff of a rewritten golden record (at most ``limit`` lines shown)."""
    import difflib
    import os

    try:  # shorter, and what `git diff` takes from the repository root
        path = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:  # another drive
        pass
    a, b = (f"a/{path}", f"b/{path}") if not os.path.isabs(path) else (path, path)
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=str(a),
                                      tofile=str(b), n=0, lineterm=""))
    if not lines:
        console.print(f"{path}: unchanged")
        return
    console.print(f"{path}: rewritten" if old else f"{path}: new golden record")
    for line in lines[:limit]:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "cyan"
        console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"... {len(lines) - limit} more diff lines: git diff {path}")
