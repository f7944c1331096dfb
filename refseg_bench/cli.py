"""``refseg-bench`` command line: one sub-command per module in ``refseg_bench.commands``.

Each command module defines ``add_parser(subparsers)`` which registers its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Command modules keep
their heavy imports inside ``func`` so ``refseg-bench --help`` stays instant.

``main`` is the one place where user errors and environment faults become one line on
stderr and an exit status (see ``refseg_bench.errors``); a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from refseg_bench import __version__
from refseg_bench.errors import EXIT_INTERRUPTED, EXIT_IO_ERROR, EXIT_USER_ERROR

EPILOG = f"""\
exit status: 0 done; {EXIT_USER_ERROR} bad input (a setting, name or file; the message says \
what to change); {EXIT_INTERRUPTED} interrupted (Ctrl-C; rerun the same command to resume); \
{EXIT_IO_ERROR} I/O fault (read-only or full disk, file-size limit); 1 a bug (with a \
traceback)."""

# Order is the order shown by --help.
COMMAND_MODULES = (
    "refseg_bench.commands.ls",
    "refseg_bench.commands.run",
    "refseg_bench.commands.train",
    "refseg_bench.commands.episodes",
    "refseg_bench.commands.leaderboard",
    "refseg_bench.commands.data",
    "refseg_bench.commands.checkpoints",
    "refseg_bench.commands.regress",
    "refseg_bench.commands.compare",
    "refseg_bench.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refseg-bench",
        description="Benchmark reference (few-shot) segmentation methods on shared folds, "
        "episodes and scoring. Settings are OmegaConf dotlist overrides, e.g. "
        "`refseg-bench run method=proto dataset=synthetic shot=1 fold=all annotation=mask`.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"refseg-bench {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of errors that are otherwise one line")
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
    except (*user_errors(), KeyboardInterrupt, OSError) as err:
        if args.traceback:
            raise
        message, code = describe_failure(err)
        print(message, file=sys.stderr, flush=True)
        return code


def describe_failure(err: BaseException) -> tuple[str, int]:
    """One line and the exit status for a user error, an interrupt or an I/O fault."""
    if isinstance(err, KeyboardInterrupt):  # a RunInterrupted says how far the run got
        return str(err) or "interrupted; rerun the same command to resume", EXIT_INTERRUPTED
    if isinstance(err, OSError):
        return io_message(err), EXIT_IO_ERROR
    return f"error: {err}", EXIT_USER_ERROR


# errno -> what to do about it
_IO_HINTS = {
    errno.EACCES: "check the folder's permissions or choose another results_dir= / data_root=",
    errno.EPERM: "check the folder's permissions or choose another results_dir= / data_root=",
    errno.EROFS: "the file system is read-only; choose another results_dir= / data_root=",
    errno.ENOSPC: "free some space (or choose another results_dir=) and rerun the same "
                  "command to resume",
    errno.EDQUOT: "the disk quota is used up; free some space and rerun the same command to "
                  "resume",
    errno.EFBIG: "a file-size limit (ulimit -f) or the file system's maximum was reached; "
                 "raise it and rerun the same command to resume",
}


def io_message(err: OSError) -> str:
    """One line for an OSError: what failed, on which file, and what to do."""
    what = err.strerror or str(err) or type(err).__name__
    where = f" ({err.filename})" if err.filename else ""
    hint = _IO_HINTS.get(err.errno, "check the file system and rerun the same command")
    return f"I/O error: {what}{where}; {hint}"


if __name__ == "__main__":
    raise SystemExit(main())
