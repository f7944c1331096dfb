"""``refseg-bench run key=value ...``: evaluate a method on a dataset's folds."""

from __future__ import annotations

HELP = """\
Settings (key=value, OmegaConf dotlist; defaults from configs/run.yaml):
  method=NAME         method to evaluate (refseg-bench ls methods)         [proto]
  dataset=NAME        dataset (refseg-bench ls datasets)                   [synthetic]
  protocol=NAME       sampling/scoring preset (refseg-bench ls protocols)  [the dataset's]
  fold=all|N|[0,2]    folds to run                                         [all]
  split=NAME          val | test | train: the split episodes come from     [the dataset's]
  shot=K              reference images per episode                         [1]
  annotation=KIND     mask | box | point | scribble                        [mask]
  episodes=N          episodes per fold                                    [the protocol's]
  seed=S              sampling seed                                        [the protocol's]
  data_root=PATH      where datasets live, <data_root>/<name>  [$REFSEG_BENCH_DATA, else
                      ~/.cache/refseg-bench/data]
  results_dir=PATH    where run records are written                        [results]
  run_id=NAME         name of the record, <results_dir>/<run_id>; letters, digits, . _ -
                      [derived from the settings that change numbers, so a rerun resumes]
  overwrite=true      discard the existing record of this run id and start again [false]
  save_predictions=true   also write one PNG per episode at original size  [false]
  progress=false      no progress bar                                      [true]
  batch_size=B num_workers=W|auto device=auto|cpu|cuda|cuda:N|mps
                      speed only, never the numbers                 [8 auto auto]
  host_memory=keep|release   keep: the process reuses freed host memory instead of
                      returning it to the kernel per tensor (fewer page faults, a peak
                      resident size that stays); speed only                [keep]
  method_args.X=... dataset_args.X=... protocol_args.X=...   per-component options
                      (configs/methods/, configs/datasets/, configs/protocols/)
  protocol_args.exact=true   the official test loader's own episodes, replayed (where the
                      preset has a replay: refseg-bench ls protocols; docs/exact-episodes.md)

A rerun of the same settings resumes where the last one stopped (one process at a time
per run id). Under torchrun the episodes are sharded across ranks and the totals summed.
Exit status: 0 done, 2 bad setting, 130 interrupted (rerun to resume), 74 I/O fault.
"""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("run", help="evaluate a method (resumable)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from refseg_bench.config import resolve_config

    cfg = resolve_config(args.overrides)  # bad names and values fail before torch is imported
    from refseg_bench.runner import run as run_benchmark

    summary = run_benchmark(cfg)
    if summary:
        print_summary(summary, Console())
    return 0


def print_summary(summary: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{summary['run_id']}", title_justify="left")
    for col in ("seed", "fold", "episodes", "skipped", "mIoU", "FB-IoU", "95% interval"):
        t.add_column(col, justify="right")
    for u in summary["units"]:
        lo, hi = u["ci95"]
        t.add_row(str(u["seed"]), str(u["fold"]), str(u["n_episodes"]), str(u["n_skipped"]),
                  f"{u['miou']:.2f}", f"{u['fbiou']:.2f}", f"[{lo:.1f}, {hi:.1f}]")
    console.print(t)
    std = summary["seed_std_miou"]
    spread = f" ± {std:.2f} (std over seeds)" if std else ""
    console.print(f"mean mIoU {summary['mean_miou']:.2f}{spread}, FB-IoU "
                  f"{summary['mean_fbiou']:.2f}; record in {summary['run_dir']}",
                  soft_wrap=True)
