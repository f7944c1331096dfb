"""``refseg-bench`` command line: one sub-command per module in ``refseg_bench.commands``.

Each command module defines ``add_parser(subparsers)`` which registers its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Command modules keep
their heavy imports inside ``func`` so ``refseg-bench --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from refseg_bench import __version__

# Order is the order shown by --help.
COMMAND_MODULES = (
    "refseg_bench.commands.ls",
    "refseg_bench.commands.run",
    "refseg_bench.commands.train",
    "refseg_bench.commands.episodes",
    "refseg_bench.commands.leaderboard",
    "refseg_bench.commands.data",
    "refseg_bench.commands.checkpoints",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refseg-bench",
        description="Benchmark reference (few-shot) segmentation methods on shared folds, "
        "episodes and scoring. Settings are OmegaConf dotlist overrides, e.g. "
        "`refseg-bench run method=proto dataset=synthetic shot=1 fold=all annotation=mask`.",
    )
    parser.add_argument("--version", action="version", version=f"refseg-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real import error inside the module
                raise
            continue  # command not built yet in this checkout
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from refseg_bench.errors import user_errors

    try:
        return int(args.func(args) or 0)
    except user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
