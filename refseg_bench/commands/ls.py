"""``refseg-bench ls [methods|datasets|protocols]``: what the harness knows."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list methods, datasets and protocols",
                       description="List registered methods, datasets and protocol presets.")
    p.add_argument("what", nargs="?", choices=("methods", "datasets", "protocols"),
                   help="only this kind (default: all three)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from refseg_bench.protocols import load_protocol, protocol_names
    from refseg_bench.registry import DATASETS, METHODS, load_builtin_entries

    load_builtin_entries()
    console = Console()
    kinds = [args.what] if args.what else ["methods", "datasets", "protocols"]
    for kind in kinds:
        table = Table(title=kind, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        if kind == "protocols":
            for name in protocol_names():
                table.add_row(name, load_protocol(name).description)
        else:
            for e in (METHODS if kind == "methods" else DATASETS).entries():
                table.add_row(e.name, e.summary)
        console.print(table)
    return 0
