"""Per-fold lists (what the sampler draws from), the 2048-pixel rule, and their disk cache.

Cache location (documented in datasets/README.md): ``<root>/.refseg-bench/`` when the
dataset root is writable, else ``~/.cache/refseg-bench/lists/<sha256(root)[:16]>/``, or
the ``cache_dir`` dataset option when set. Inside, ``<dataset>/lists-<key>/`` holds one
JSON file per (fold, split) plus ``meta.json``; ``<key>`` hashes the options that change
the lists, so e.g. BAM-filtered and unfiltered lists live side by side. Expensive
intermediate results (per-image class areas, COCO/LVIS instance masks) sit beside them.
Each file records a signature of its sources (sizes and mtimes); a mismatch rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LISTS_VERSION = 1
CACHE_DIRNAME = ".refseg-bench"
FALLBACK_CACHE = "~/.cache/refseg-bench/lists"

# PFENet util/dataset.py: a class must cover >= 2 * 32 * 32 pixels of an image at original
# resolution for the image to be listed for that class (docs/protocols.md §4.1).
MIN_PIXELS = 2 * 32 * 32


@dataclass
class SplitLists:
    """The lists of one (fold, split).

    ``classes``: episode classes, ascending (base classes for train, novel otherwise).
    ``items_by_class``: class -> items usable as query or support, list rules applied,
    in list order. ``queries``: query candidates in list-file order. ``present``: item ->
    classes of ``classes`` present in it at any size (PFENet draws the episode class among
    these). ``pairs``: the official (item, class) pair list where one exists (HSNet PASCAL).
    """

    classes: list[int]
    items_by_class: dict[int, list[str]]
    queries: list[str]
    present: dict[str, list[int]]
    pairs: list[tuple[str, int]] | None = None

    def pair_list(self) -> list[tuple[str, int]]:
        """Official pairs, else (item, class) for every listed class of each query in order."""
        if self.pairs is not None:
            return list(self.pairs)
        member = {c: set(v) for c, v in self.items_by_class.items()}
        return [(q, c) for q in self.queries for c in self.present.get(q, [])
                if q in member.get(c, ())]

    def to_json(self) -> dict:
        return {
            "classes": self.classes,
            "items_by_class": {str(c): v for c, v in self.items_by_class.items()},
            "queries": self.queries,
            "present": self.present,
            "pairs": None if self.pairs is None else [[i, c] for i, c in self.pairs],
        }

    @classmethod
    def from_json(cls, d: dict) -> SplitLists:
        pairs = d.get("pairs")
        return cls(
            classes=[int(c) for c in d["classes"]],
            items_by_class={int(c): list(v) for c, v in d["items_by_class"].items()},
            queries=list(d["queries"]),
            present={k: [int(c) for c in v] for k, v in d["present"].items()},
            pairs=None if pairs is None else [(str(i), int(c)) for i, c in pairs],
        )


def lists_from_areas(areas: Mapping[str, Mapping[int, int]], order: Iterable[str],
                     classes: Sequence[int], min_pixels: int = MIN_PIXELS,
                     base_only: Sequence[int] | None = None) -> SplitLists:
    """PFENet's ``make_dataset`` on precomputed per-image class areas.

    ``areas[item][c]`` is the pixel count of class ``c`` in ``item`` (255 excluded). An
    item is listed for ``c`` when that count is ``>= min_pixels``; it is a query candidate
    when it is listed for at least one class. With ``base_only`` (BAM's
    ``filter_intersection``) an item is dropped entirely when any labelled class is outside
    ``base_only``, so no novel object appears in a training image, even as background.
    """
    wanted = set(classes)
    allowed = set(base_only) if base_only is not None else None
    by_class: dict[int, list[str]] = {c: [] for c in sorted(wanted)}
    queries, present = [], {}
    for item in order:
        item_areas = areas.get(item)
        if not item_areas:
            continue
        if allowed is not None and not set(item_areas) <= allowed:
            continue
        listed = [c for c in sorted(item_areas) if c in wanted and item_areas[c] >= min_pixels]
        if not listed:
            continue
        queries.append(item)
        present[item] = sorted(c for c in item_areas if c in wanted and item_areas[c] > 0)
        for c in listed:
            by_class[c].append(item)
    return SplitLists(sorted(wanted), by_class, queries, present)


# --- cache ------------------------------------------------------------------------------
def options_key(options: Mapping) -> str:
    """Short stable hash of the options that change the lists."""
    blob = json.dumps(dict(options), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cache_root(root: Path, override: str | Path | None = None) -> Path:
    """Where a dataset's caches live (see the module docstring)."""
    if override:
        return Path(override).expanduser()
    root = Path(root).expanduser()
    own = root / CACHE_DIRNAME
    if (own.is_dir() and os.access(own, os.W_OK)) or (
            not own.exists() and root.is_dir() and os.access(root, os.W_OK)):
        return own
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(FALLBACK_CACHE).expanduser() / digest


def file_signature(paths: Iterable[Path]) -> list:
    """(name, size, mtime_ns) of each existing path: changes when a source file changes."""
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
        except FileNotFoundError:
            out.append([str(p), None, None])
            continue
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    tmp.replace(path)


def read_json_cache(path: Path, signature) -> dict | None:
    """The cached payload if ``path`` exists, parses, and matches version and signature.

    A cache file that does not parse is ours, not the user's data: it is rebuilt.
    """
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if data.get("version") != LISTS_VERSION or data.get("signature") != signature:
        return None
    return data


@dataclass
class ListCache:
    """One folder of per-(fold, split) list files for one set of list options."""

    folder: Path
    signature: list | dict = field(default_factory=list)

    def path(self, fold: int, split: str) -> Path:
        return self.folder / f"fold{fold}-{split}.json"

    def read(self, fold: int, split: str) -> SplitLists | None:
        data = read_json_cache(self.path(fold, split), self.signature)
        return None if data is None else SplitLists.from_json(data["lists"])

    def write(self, fold: int, split: str, lists: SplitLists, meta: Mapping) -> Path:
        path = self.path(fold, split)
        write_json_atomic(path, {"version": LISTS_VERSION, "signature": self.signature,
                                 "meta": dict(meta), "lists": lists.to_json()})
        return path
