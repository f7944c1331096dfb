"""``refseg-bench data prepare|inspect <dataset>``: build and cache the per-fold lists of a
dataset on disk, and print per-fold counts.

The data root is ``--root``, else ``dataset_args.root``, else ``<data_root>/<dirname>``
where ``data_root`` is the ``data_root=`` setting, else ``$REFSEG_BENCH_DATA``, else
``~/.cache/refseg-bench/data`` (datasets/README.md). List options come from the protocol
preset (``--protocol``, default: the dataset's) under any ``dataset_args.*`` given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass

EPILOG = """\
examples:
  refseg-bench data prepare pascal5i --root /data/VOCdevkit/VOC2012
  refseg-bench data prepare pascal5i --protocol bam        # BAM's base-only train lists
  refseg-bench data prepare coco20i dataset_args.masks=png
  refseg-bench data inspect fss1000 --root /data/FSS-1000
"""


class _Intermixed(argparse.ArgumentParser):
    """Accepts ``key=value`` settings after options too (``pascal5i --root X k=v``), which a
    plain ``nargs='*'`` positional refuses once an option has been seen."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare (build and cache fold lists) and inspect datasets",
                       description="Build and cache the per-fold lists of a dataset "
                       "on disk (prepare), or print per-fold counts (inspect).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=_Intermixed)
    for action, text in (("prepare", "build and cache the per-fold lists, then print counts"),
                         ("inspect", "print per-fold counts (builds the lists if not cached)")):
        q = actions.add_parser(action, help=text, description=text, epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("dataset", help="registered dataset name (refseg-bench ls datasets)")
        q.add_argument("--root", help="dataset folder (default: dataset_args.root, else "
                       "$REFSEG_BENCH_DATA/<dirname>, else ~/.cache/refseg-bench/data/<dirname>)")
        q.add_argument("--protocol", help="take list options from this preset "
                       "(default: the dataset's default protocol)")
        q.add_argument("overrides", nargs="*", metavar="key=value",
                       help="settings, e.g. dataset_args.lists=pfenet data_root=/data")
        if action == "prepare":
            q.add_argument("--force", action="store_true",
                           help="rebuild even if cached lists look current")
        q.set_defaults(func=run_prepare if action == "prepare" else run_inspect)


@dataclass(frozen=True)
class SplitSummary:
    """Counts of one (fold, split): query images, (image, class) pairs, and the number of
    listed images per class (min / median / max)."""

    fold: int
    split: str
    classes: int
    images: int
    pairs: int
    per_class_min: int
    per_class_median: float
    per_class_max: int


def split_summary(ds, fold: int, split: str) -> SplitSummary:
    classes = ds.classes(fold, split)
    sizes = [len(ds.items(fold, split, c)) for c in classes] or [0]
    return SplitSummary(fold, split, len(classes), len(ds.query_items(fold, split)),
                        len(ds.pairs(fold, split)), min(sizes), statistics.median(sizes),
                        max(sizes))


def dataset_splits(ds) -> tuple[str, ...]:
    return tuple(getattr(ds, "available_splits", ("train", "val")))


def open_dataset(args):
    """Build the dataset as a run would: preset dataset options under ``dataset_args``."""
    from omegaconf import OmegaConf

    from refseg_bench.config import build_dataset, resolve_config
    from refseg_bench.protocols import load_protocol
    from refseg_bench.registry import DATASETS

    cfg = resolve_config([f"dataset={args.dataset}", *args.overrides])
    if args.root:
        OmegaConf.update(cfg, "dataset_args.root", args.root, merge=True)
    name = args.protocol or cfg.protocol or DATASETS.get(args.dataset).default_protocol
    defaults = load_protocol(name).for_dataset(args.dataset).dataset_args
    return build_dataset(cfg, defaults), name


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_prepare(args) -> int:
    import time

    ds, protocol = open_dataset(args)
    start = time.perf_counter()
    if hasattr(ds, "prepare"):
        written = ds.prepare(force=args.force, log=_log)
        _log(f"wrote {len(written)} list files under {written[0].parent if written else '-'}")
    else:  # datasets without a list cache build their lists on first use
        for fold in ds.folds():
            for split in dataset_splits(ds):
                ds.query_items(fold, split)
    _log(f"prepared {ds.name} in {time.perf_counter() - start:.1f} s")
    print_summary(ds, protocol)
    return 0


def run_inspect(args) -> int:
    ds, protocol = open_dataset(args)
    ds.log = _log
    print_summary(ds, protocol)
    return 0


def print_summary(ds, protocol: str) -> None:
    from rich.console import Console
    from rich.table import Table

    info = ds.describe()
    table = Table(title=f"{ds.name} ({protocol} lists): {info.get('root')}", title_justify="left",
                  caption="images: query images; pairs: (image, class) pairs; per class: "
                  "images listed for each class (min / median / max)", caption_justify="left")
    for col in ("fold", "split", "classes", "images", "pairs", "per class min", "median",
                "max"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for fold in ds.folds():
        for split in dataset_splits(ds):
            s = split_summary(ds, fold, split)
            table.add_row(str(s.fold), s.split, str(s.classes), str(s.images), str(s.pairs),
                          str(s.per_class_min), f"{s.per_class_median:g}", str(s.per_class_max))
    console = Console()
    console.print(table)
    if info.get("options"):
        console.print("options: " + ", ".join(f"{k}={v}" for k, v in info["options"].items()))
    if hasattr(ds, "cache_folder"):
        console.print(f"cache: {ds.cache_folder()}")
