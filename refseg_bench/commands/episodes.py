"""``refseg-bench episodes DATASET``: print a unit's episode manifest as JSON lines, without
running a method, so episodes can be compared across harnesses (``--exact``: the official
loader's own episodes, replayed).

stdout holds one episode per line: ``sampling_seed``, ``fold``, ``index``, ``class_id``
(the dataset's id, as in the run records), ``class_name``, ``query``, ``supports`` and
``seed`` (the annotation seed of the episode). A summary per unit (count, episode kind,
manifest sha256, the replay's notes) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  refseg-bench episodes synthetic --fold 0 --shot 1 episodes=5
  refseg-bench episodes pascal5i --protocol hsnet --fold 0 --shot 5 --exact
  refseg-bench episodes coco20i --protocol pfenet --fold 1 --exact dataset_args.masks=png
  refseg-bench episodes pascal5i --protocol bam --fold all --exact seed=510
"""


def add_parser(sub) -> None:
    from refseg_bench.commands.data import _Intermixed

    p = sub.add_parser("episodes", help="print the episodes of a setting as JSON lines",
                       description="Print the episode manifest of (dataset, protocol, fold, "
                       "shot) as JSON lines, one episode a line, without running a method.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # As for `data`: key=value settings may also follow the options, which a plain
    # nargs='*' positional refuses once an option has been seen.
    p.__class__ = _Intermixed
    p.add_argument("dataset", help="registered dataset name (refseg-bench ls datasets)")
    p.add_argument("--protocol", help="preset (default: the dataset's)")
    p.add_argument("--fold", default="0", help="fold number or 'all' (default: 0)")
    p.add_argument("--shot", type=int, default=1, help="references per episode (default: 1)")
    p.add_argument("--exact", action="store_true",
                   help="the official test loader's episodes, replayed (protocol_args.exact)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="settings as for run: episodes=N seed=S split=... data_root=... "
                   "dataset_args.X=... protocol_args.X=...")
    p.set_defaults(func=run)


def _settings(args) -> list[str]:
    out = [f"dataset={args.dataset}", f"shot={args.shot}", f"fold={args.fold}"]
    if args.protocol:
        out.append(f"protocol={args.protocol}")
    if args.exact:
        out.append("protocol_args.exact=true")
    return out + list(args.overrides)


def run(args, out=None, err=None) -> int:
    from omegaconf import OmegaConf

    from refseg_bench.config import build_dataset, folds_of, resolve_config
    from refseg_bench.protocols import resolve_protocol
    from refseg_bench.registry import DATASETS
    from refseg_bench.replay import episode_kind
    from refseg_bench.sampler import sample_episodes

    out, err = out or sys.stdout, err or sys.stderr
    cfg = resolve_config(_settings(args))
    dataset_cls = DATASETS.get(cfg.dataset)
    name = cfg.protocol or dataset_cls.default_protocol
    split = cfg.split or dataset_cls.default_split
    protocol = resolve_protocol(name, cfg.dataset,
                                OmegaConf.to_container(cfg.protocol_args, resolve=True))
    dataset = build_dataset(cfg, protocol.dataset_args)
    seeds = [int(cfg.seed)] if cfg.seed is not None else list(protocol.seeds) or [protocol.seed]
    n = int(cfg.episodes) if cfg.episodes is not None else protocol.episodes
    for seed in seeds:
        for fold in folds_of(cfg, dataset.n_folds):
            m = sample_episodes(dataset, fold, split, int(cfg.shot), n, seed, protocol)
            for e in m.episodes:
                row = {"sampling_seed": seed, **e.to_row(),
                       "class_name": dataset.class_name(e.class_id)}
                out.write(json.dumps(row) + "\n")
            notes = "; ".join((m.header.get("replay") or {}).get("notes", []))
            print(f"# {dataset.name} {split} fold {fold} shot {cfg.shot}, protocol {name}, "
                  f"seed {seed}: {len(m.episodes)} episodes, {episode_kind(m.header)}, "
                  f"manifest sha256 {m.sha256}" + (f" ({notes})" if notes else ""), file=err)
    return 0
