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
            table.add_column("exact replay (protocol_args.exact=true)")
            for name in protocol_names():
                p = load_protocol(name)
                table.add_row(name, p.description, replay_summary(p))
        else:
            for e in (METHODS if kind == "methods" else DATASETS).entries():
                table.add_row(e.name, e.summary)
        console.print(table)
    return 0


def replay_summary(protocol) -> str:
    """Where the preset can replay the official episodes, and where it cannot and why."""
    from refseg_bench.replay import coverage

    covered, impossible, caveats = coverage(protocol.replay)
    if not covered and not impossible:
        return "none: episodes follow the rules only"
    lines = [f"{', '.join(covered)} ({protocol.replay['code']} loaders)"]
    lines += [f"not {ds}: {why}" for ds, why in impossible.items()]
    lines += list(caveats)
    if protocol.replay.get("note"):
        lines.append(protocol.replay["note"])
    for ds, over in protocol.dataset_overrides.items():
        if (over.get("replay") or {}).get("note"):
            lines.append(f"{ds}: {over['replay']['note']}")
    return "\n".join(lines)
