"""``refseg-bench train key=value ...``: train a method on the base classes of a fold."""

from __future__ import annotations

HELP = """\
Settings (key=value, OmegaConf dotlist; same config as `run`):
  method=NAME         a method with a training step (e.g. vrpsam)
  dataset=NAME        dataset whose `train` split and base classes are used   [synthetic]
  fold=N|[0,2]|all    fold(s) to train, one after the other                   [all]
  annotation=KIND     reference annotation the model is trained for          [mask]
  device=auto|cpu|cuda
  method_args.X=...   method options (e.g. method_args.train.epochs=5)

Training resumes from the last completed epoch when rerun with the same settings; the
checkpoint goes where `refseg-bench run` looks for it (see the method's documentation).
"""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("train", help="train a method on a fold's base classes (resumable)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from refseg_bench import hostmem
    from refseg_bench.config import build_dataset, build_method, folds_of, resolve_config
    from refseg_bench.devices import resolve_device
    from refseg_bench.errors import ConfigError
    from refseg_bench.methods.base import Method

    cfg = resolve_config(args.overrides)
    method = build_method(cfg)
    if type(method).fit is Method.fit:
        raise ConfigError(f"method {cfg.method!r} has no training step (no fit()); only methods "
                          "that train can be used with `refseg-bench train`.")
    dataset = build_dataset(cfg)
    device = resolve_device(cfg.device)
    hostmem.apply(cfg.host_memory)
    console = Console()
    method.setup(device, dataset)
    for fold in folds_of(cfg, dataset.n_folds):
        console.print(f"[bold]training {cfg.method} on {cfg.dataset} fold {fold} "
                      f"(base classes {dataset.classes(fold, 'train')}), "
                      f"annotation={cfg.annotation}[/bold]")
        report = method.fit(dataset, fold, annotation=cfg.annotation, device=device,
                            progress=bool(cfg.progress))
        for key, value in report.items():
            console.print(f"  {key}: {value}")
    return 0
