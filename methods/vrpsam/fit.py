"""Train one fold with checkpoints, resume, a progress bar and a loss-curve plot.

Each completed epoch writes, atomically and in this order, ``train_state.pt`` (learnable
weights, optimiser, scheduler, progress), ``vrp_encoder.pt`` (the official format) and
``train.json``; see :mod:`refseg_bench.methods.vrpsam.store` for the layout. A run that
finds a ``train_state.pt`` with the same settings continues from its last epoch; one with
different settings stops with an error rather than mixing two recipes.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.errors import CheckpointError
from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam.network import VRPSAMNet
from refseg_bench.methods.vrpsam.trainer import (
    BaseOnlyView,
    TrainProgress,
    TrainSettings,
    make_optimizer,
    run_epochs,
    steps_per_epoch,
)


@dataclass
class FitResult:
    directory: Path
    checkpoint: Path
    sha256: str
    progress: TrainProgress
    resumed_from_epoch: int


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes and values): tells whether the frozen
    models a checkpoint was trained against are the ones loaded now."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def learnable_state(net: VRPSAMNet) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().cpu().clone()
            for name, m in net.encoder.learnable_modules().items()
            for k, v in m.state_dict().items()}


def _resume(directory: Path, net: VRPSAMNet, opt, sched, expected: dict) -> TrainProgress:
    info = store.read_info(directory) or {}
    found = {k: info.get(k) for k in expected}
    if found != expected:
        diff = sorted(k for k in expected if found.get(k) != expected[k])
        raise CheckpointError(
            f"{directory} holds training with different {', '.join(diff)} (found "
            f"{ {k: found.get(k) for k in diff} }, configured { {k: expected[k] for k in diff} }). "
            "Delete that directory to retrain, or set method_args.checkpoint_dir elsewhere.")
    state = torch.load(directory / store.STATE_FILE, map_location="cpu", weights_only=True)
    net.encoder.load_state_dict(state["encoder"], strict=False)
    missing = set(learnable_state(net)) - set(state["encoder"])
    if missing:
        raise CheckpointError(f"{directory / store.STATE_FILE} lacks {sorted(missing)[:5]}")
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return TrainProgress(epoch=int(state["epoch"]), step=int(state["step"]),
                         losses=[float(x) for x in state["losses"].tolist()],
                         seconds=float(state["seconds"]))


def _checkpoint(directory: Path, net: VRPSAMNet, opt, sched, progress: TrainProgress,
                info: dict, settings: TrainSettings) -> None:
    store.atomic_save({
        "encoder": learnable_state(net), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "epoch": progress.epoch, "step": progress.step,
        "losses": torch.tensor(progress.losses, dtype=torch.float64),
        "seconds": progress.seconds}, directory / store.STATE_FILE)
    store.save_encoder(net.encoder, directory / store.ENCODER_FILE)
    complete = progress.epoch >= settings.epochs
    sha = store.sha256_file(directory / store.ENCODER_FILE) if complete else None
    store.write_info(directory, {**info, "epochs_done": progress.epoch, "steps": progress.step,
                                 "train_seconds": round(progress.seconds, 2),
                                 "complete": complete, "encoder_sha256": sha})
    plot_losses(progress.losses, progress.epoch, directory / store.CURVE_FILE)


def plot_losses(losses: list[float], epochs: int, path: Path) -> None:
    """Per-step loss (thin) and its running mean over each epoch's steps (thick), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not losses:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(range(1, len(losses) + 1), losses, lw=0.6, alpha=0.5, label="step loss")
    per = max(len(losses) // max(epochs, 1), 1)
    means = [sum(losses[i:i + per]) / len(losses[i:i + per]) for i in range(0, len(losses), per)]
    ax.plot([min(i + per, len(losses)) for i in range(0, len(losses), per)], means, lw=2,
            marker="o", ms=3, label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("BCE + Dice")
    ax.set_title(f"VRP-SAM training: {path.parent.name}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _progress_bar(enabled: bool):
    import contextlib

    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr))


def fit_fold(net: VRPSAMNet, dataset: FoldedDataset, fold: int, annotation: str,
             settings: TrainSettings, directory: Path, info: dict, *,
             show_progress: bool = True, num_workers: int = 0) -> FitResult:
    """Train (or resume training of) ``net.encoder`` on ``fold``'s base classes and write the
    checkpoint files into ``directory``. ``info`` (settings, key, fingerprints) must match a
    previous run's ``train.json`` for it to be resumed. ``num_workers``: loader processes
    (speed only)."""
    view = BaseOnlyView(dataset, fold) if settings.exclude_novel_images else dataset
    per_epoch = steps_per_epoch(view, fold, settings)
    opt, sched = make_optimizer(net, settings, settings.epochs * per_epoch)
    progress = TrainProgress()
    if (directory / store.STATE_FILE).is_file():
        progress = _resume(directory, net, opt, sched, info)
    start = progress.epoch
    with _progress_bar(show_progress) as bar:
        task = bar.add_task(f"vrpsam fold {fold}", total=settings.epochs * per_epoch,
                            completed=progress.step, loss="-", rate="") if bar else None

        def on_step(p: TrainProgress) -> None:
            if bar is not None:
                recent = p.losses[-per_epoch:]
                speed = bar.tasks[task].speed
                bar.update(task, completed=p.step, loss=f"{sum(recent) / len(recent):.4f}",
                           rate=f"{speed:.2f} it/s" if speed else "")
                bar.update(task, description=f"vrpsam fold {fold} epoch {p.epoch + 1}"
                           f"/{settings.epochs}")

        def on_epoch(p: TrainProgress) -> None:
            _checkpoint(directory, net, opt, sched, p, info, settings)

        run_epochs(net, dataset, fold, annotation, settings, opt, sched, progress,
                   on_step, on_epoch, num_workers)
    if start >= settings.epochs and not store.is_complete(directory):
        _checkpoint(directory, net, opt, sched, progress, info, settings)
    path = directory / store.ENCODER_FILE
    return FitResult(directory, path, store.sha256_file(path), progress, start)
