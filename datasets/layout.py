"""On-disk layout helpers shared by the benchmark datasets: finding the dataset folder under
the root the user gave, naming missing files, reading shipped list files, binarising masks.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError

LISTS_PACKAGE = "refseg_bench.datasets"


def find_root(root: Path, candidates: Sequence[str], required: Sequence[str], dataset: str,
              layout: str) -> Path:
    """The first ``root / candidate`` holding every path in ``required``.

    ``candidates`` are sub-folders that the official READMEs put between the data root and
    the files (e.g. ``""``, ``"VOC2012"``, ``"VOCdevkit/VOC2012"``), so the user may point
    ``--root`` at any level. Raises ``DatasetError`` with the expected ``layout`` otherwise.
    """
    root = Path(root).expanduser()
    for sub in candidates:
        base = root / sub if sub else root
        if all((base / r).exists() for r in required):
            return base
    looked = ", ".join(str(root / c) if c else str(root) for c in candidates)
    found = "does not exist" if not root.exists() else f"contains {_listing(root)}"
    raise DatasetError(
        f"{dataset}: no dataset found under {root} ({found}). Looked for "
        f"{', '.join(required)} in: {looked}.\nExpected layout:\n{layout}\n"
        f"Point --root (or dataset_args.root) at the folder shown at the top, or set "
        f"$REFSEG_BENCH_DATA so that <data_root>/<dirname> is that folder."
    )


def _listing(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as err:
        return f"an unreadable folder ({err.strerror})"
    if not names:
        return "nothing"
    more = f" ... ({len(names)} entries)" if len(names) > limit else ""
    return " ".join(names[:limit]) + more


def require_files(paths: Iterable[Path], dataset: str, what: str, layout: str) -> None:
    """Raise a ``DatasetError`` naming missing files (the first 10 and the count)."""
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return
    shown = "\n  ".join(str(p) for p in missing[:10])
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    raise DatasetError(
        f"{dataset}: {len(missing)} {what} missing:\n  {shown}{more}\n"
        f"Expected layout:\n{layout}\nRe-extract the dataset archives, or point the lists "
        f"option at lists that match your copy."
    )


def missing_from_listing(folder: Path, names: Iterable[str]) -> list[str]:
    """Names not present in ``folder`` (one directory listing instead of one stat each)."""
    try:
        with os.scandir(folder) as it:
            present = {e.name for e in it}
    except FileNotFoundError:
        present = set()
    return [n for n in names if n not in present]


def packaged_list_path(relative: str):
    """A list file shipped in ``datasets/lists/`` (a Traversable)."""
    return resources.files(LISTS_PACKAGE).joinpath("lists", *relative.split("/"))


def read_lines(source: str | Path) -> list[str]:
    """Non-empty stripped lines of a list file; ``source`` is a path, or ``pkg:<relative>`` for
    a list shipped in ``datasets/lists/``. ``.gz`` files are decompressed. CRLF is accepted
    (the HSNet FSS-1000 split files use it)."""
    if isinstance(source, str) and source.startswith("pkg:"):
        node = packaged_list_path(source[4:])
        if not node.is_file():
            raise DatasetError(f"packaged list {source[4:]} is missing from the installation; "
                               "reinstall refseg-bench (`pip install -e .`).")
        data = node.read_bytes()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DatasetError(f"list file {path} does not exist. Check the dataset option "
                               "that names it, or leave it unset to use the shipped list.")
        data = path.read_bytes()
    if str(source).endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.decode("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def stems(folder: Path, suffix: str) -> list[str]:
    """Stems of the files in ``folder`` ending with ``suffix``, in natural order ([] if the
    folder is absent)."""
    try:
        with os.scandir(folder) as it:
            names = [e.name[: -len(suffix)] for e in it if e.name.endswith(suffix)]
    except FileNotFoundError:
        return []
    return sorted(names, key=natural_key)


def natural_key(name: str) -> list:
    """Sort key that orders ``2`` before ``10`` (FSS-1000 and PerSeg number their files)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def binarize(plane: np.ndarray, threshold: int = 128) -> np.ndarray:
    """``(H, W)`` uint8 0/1 foreground from a raw mask plane.

    Masks in the wild are 0/255, anti-aliased 0..255, or 0/1 (real-samples README). The
    official loaders threshold at 128 (HSNet, PATNet), which would erase a 0/1 mask, so a
    plane whose maximum is 1 is read as 0/1.
    """
    if plane.size and int(plane.max()) <= 1:
        return (plane > 0).astype(np.uint8)
    return (plane >= threshold).astype(np.uint8)
