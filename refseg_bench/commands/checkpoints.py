"""``refseg-bench checkpoints [list]`` and ``refseg-bench checkpoints fetch NAME``: the
checkpoint catalogue with each file's local status, and resumable, hash-checked downloads."""

from __future__ import annotations


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "checkpoints", help="list official checkpoints and their local status; fetch one",
        description="Without arguments (or with `list`): every catalogue entry with its local "
        "status (missing, partial, present: size and sha256 ok / MISMATCH / not hashed). "
        "`fetch NAME` downloads one file with resume and checks its sha256. Files live in "
        "$REFSEG_BENCH_CHECKPOINTS (default ~/.cache/refseg-bench/checkpoints).")
    _list_options(p, argparse.SUPPRESS)
    p.set_defaults(func=run_list, verify=False, dest=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", help="list the catalogue (the default)")
    # SUPPRESS: `checkpoints --verify list` keeps the --verify given before `list`
    _list_options(ls, argparse.SUPPRESS)
    ls.set_defaults(func=run_list)
    fetch = actions.add_parser("fetch", help="download one checkpoint",
                               description="Download NAME into the checkpoint directory, "
                               "resuming a partial .part file, then check its sha256.")
    fetch.add_argument("name", help="catalogue name, e.g. sam_vit_h "
                       "(see `refseg-bench checkpoints`)")
    fetch.add_argument("--url", help="download from this URL instead (a mirror)")
    fetch.add_argument("--dest", default=argparse.SUPPRESS, help="directory to download into")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(func=run_fetch)


def _list_options(parser, default) -> None:
    """``--verify`` and ``--dest``, the same on ``checkpoints`` and ``checkpoints list``."""
    parser.add_argument("--verify", action="store_true", default=default,
                        help="hash present files (reads every byte; slow for multi-GB files)")
    parser.add_argument("--dest", default=default, help="checkpoint directory to inspect")


def local_status(entry, directory, verify: bool) -> str:
    """missing | partial (N bytes) | present, size MISMATCH | present, sha256 ok |
    present, sha256 MISMATCH | present (not hashed; use --verify) | present, sha256
    unverified (none published). The size is compared with the catalogue's whenever it
    lists one (a stat, no reading), so a truncated or wrong file never shows as present."""
    from refseg_bench.models.checkpoints import sha256_file
    from refseg_bench.models.download import part_path

    if entry.is_folder:
        from refseg_bench.models.folders import folder_status

        return folder_status(entry, directory, verify)
    path = directory / entry.file_name
    if not path.exists():
        part = part_path(path)
        return f"partial ({part.stat().st_size} bytes)" if part.exists() else "missing"
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return (f"present, size MISMATCH ({size:,} bytes, expected {entry.size:,}): "
                f"delete it and run `refseg-bench checkpoints fetch {entry.name}`")
    if entry.sha256 is None:
        return "present, sha256 unverified (none published)"
    if not verify:
        return "present (not hashed; use --verify)"
    return "present, sha256 ok" if sha256_file(path) == entry.sha256 else "present, sha256 MISMATCH"


def run_list(args) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from refseg_bench.models.checkpoints import catalogue, checkpoint_dir

    directory = Path(args.dest).expanduser() if args.dest else checkpoint_dir()
    table = Table(title=f"checkpoints in {directory}", title_justify="left")
    for col in ("name", "file", "size", "licence", "status"):
        table.add_column(col, style="bold" if col == "name" else None)
    for entry in catalogue().values():
        total = entry.size or (sum(f.size for f in entry.files)
                               if entry.files and all(f.size for f in entry.files) else None)
        size = f"{total / 2**20:,.0f} MiB" if total else "?"
        table.add_row(entry.name, entry.file_name + ("/" if entry.is_folder else ""), size,
                      entry.licence,
                      local_status(entry, directory, args.verify))
    Console(width=160).print(table)
    return 0


def run_fetch(args) -> int:
    from refseg_bench.models.checkpoints import catalogue_entry, fetch, sha256_file

    path = fetch(args.name, args.dest, url_override=args.url, progress=not args.no_progress)
    entry = catalogue_entry(args.name)
    if entry.is_folder:
        published = sum(f.sha256 is not None for f in entry.files)
        print(f"{path}: {len(entry.files)} files, {published} checked against a published "
              f"sha256, {len(entry.files) - published} unverified (none published)")
        return 0
    found = sha256_file(path)
    if entry.sha256 is None:
        print(f"{path}: sha256 {found} (unverified: no published sha256 for {args.name})")
    else:
        print(f"{path}: sha256 {found} ok")
    return 0
