"""The resumable training loop shared by trained methods.

A method describes its training as a :class:`TrainJob`; :func:`fit` runs it epoch by
epoch. Each completed epoch writes, atomically and in this order, ``train_state.pt``
(learnable weights, optimiser, scheduler, progress), the method's weights file in its
official format, and ``train.json``. A run that finds a ``train_state.pt`` whose
``train.json`` matches the job's ``info`` continues from its last epoch; a different one
stops with an error rather than mixing two recipes. Randomness is the job's: it must make
each step a pure function of (its seed, epoch, step) so a resumed run repeats exactly.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import sha256_file
from refseg_bench.trained import store


@dataclass
class TrainProgress:
    """Where training stands; ``losses`` holds one float per optimisation step."""

    epoch: int = 0  # completed epochs
    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class FitResult:
    directory: Path
    checkpoint: Path
    sha256: str
    progress: TrainProgress
    resumed_from_epoch: int
    epochs: int

    def report(self) -> dict:
        """JSON-ready summary for ``refseg-bench train`` (``Method.fit``'s return value)."""
        losses = self.progress.losses
        tail = losses[-max(len(losses) // max(self.epochs, 1), 1):] or [float("nan")]
        return {"checkpoint": str(self.checkpoint), "sha256": self.sha256,
                "directory": str(self.directory), "epochs": self.progress.epoch,
                "steps": self.progress.step, "resumed_from_epoch": self.resumed_from_epoch,
                "last_epoch_loss": sum(tail) / len(tail),
                "train_seconds": self.progress.seconds}


class TrainJob(ABC):
    """One method's training of one fold, as the loop needs it."""

    title: str  # progress bar and plot title, e.g. "vrpsam fold 0"
    weights_file: str  # the official-format file written every epoch
    epochs: int
    loss_name: str = "loss"

    @abstractmethod
    def steps_per_epoch(self) -> int: ...

    @abstractmethod
    def learnable_state(self) -> dict[str, torch.Tensor]:
        """CPU copies of every trained tensor (what ``train_state.pt`` keeps)."""

    @abstractmethod
    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def optimizer(self, total_steps: int):
        """``(optimizer, scheduler)`` over the learnable parameters; the scheduler is
        stepped once per optimisation step."""

    @abstractmethod
    def epoch_batches(self, epoch: int) -> Iterable:
        """The batches of ``epoch`` in training order (a pure function of ``epoch``)."""

    @abstractmethod
    def train_step(self, batch, step: int, opt, sched) -> float:
        """One optimisation step; returns the loss."""

    @abstractmethod
    def export(self, path: Path) -> None:
        """Write the trained weights in the method's official format (atomically)."""

    def finish(self) -> None:  # noqa: B027  (optional hook, empty by default)
        """Called after the last epoch (e.g. back to eval mode)."""


def fit(job: TrainJob, directory: Path, info: dict, *, show_progress: bool = True
        ) -> FitResult:
    """Train (or resume training of) ``job`` into ``directory``; see the module docstring."""
    directory = Path(directory)
    per_epoch = job.steps_per_epoch()
    opt, sched = job.optimizer(job.epochs * per_epoch)
    progress = TrainProgress()
    if (directory / store.STATE_FILE).is_file():
        progress = _resume(directory, job, opt, sched, info)
    start = progress.epoch
    with _progress_bar(show_progress) as bar:
        task = bar.add_task(job.title, total=job.epochs * per_epoch, completed=progress.step,
                            loss="-", rate="") if bar else None
        for epoch in range(progress.epoch, job.epochs):
            t0 = time.perf_counter()
            for batch in job.epoch_batches(epoch):
                progress.losses.append(job.train_step(batch, progress.step, opt, sched))
                progress.step += 1
                if bar is not None:
                    _show(bar, task, job, progress, per_epoch, epoch)
            progress.epoch = epoch + 1
            progress.seconds += time.perf_counter() - t0
            _checkpoint(directory, job, opt, sched, progress, info)
    job.finish()
    if start >= job.epochs and not store.is_complete(directory, job.weights_file):
        _checkpoint(directory, job, opt, sched, progress, info)
    path = directory / job.weights_file
    return FitResult(directory, path, sha256_file(path), progress, start, job.epochs)


def _show(bar, task, job: TrainJob, p: TrainProgress, per_epoch: int, epoch: int) -> None:
    recent = p.losses[-per_epoch:]
    speed = bar.tasks[task].speed
    bar.update(task, completed=p.step, loss=f"{sum(recent) / len(recent):.4f}",
               rate=f"{speed:.2f} it/s" if speed else "",
               description=f"{job.title} epoch {epoch + 1}/{job.epochs}")


def _resume(directory: Path, job: TrainJob, opt, sched, expected: dict) -> TrainProgress:
    found = store.read_info(directory)
    diff = store.info_mismatch(expected, found)
    if diff:
        found = found or {}
        raise CheckpointError(
            f"{directory} holds training with different {', '.join(diff)} (found "
            f"{ {k: found.get(k) for k in diff} }, configured { {k: expected[k] for k in diff} }). "
            "Delete that directory to retrain, or set method_args.checkpoint_dir elsewhere.")
    state = torch.load(directory / store.STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "learnable" not in state:
        raise CheckpointError(f"{directory / store.STATE_FILE} is not a training state of this "
                              "version; delete the directory to retrain.")
    missing = set(job.learnable_state()) - set(state["learnable"])
    if missing:
        raise CheckpointError(f"{directory / store.STATE_FILE} lacks {sorted(missing)[:5]}; "
                              "delete the directory to retrain.")
    job.load_learnable_state(state["learnable"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return TrainProgress(epoch=int(state["epoch"]), step=int(state["step"]),
                         losses=[float(x) for x in state["losses"].tolist()],
                         seconds=float(state["seconds"]))


def _checkpoint(directory: Path, job: TrainJob, opt, sched, progress: TrainProgress,
                info: dict) -> None:
    store.atomic_save({
        "learnable": job.learnable_state(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "epoch": progress.epoch, "step": progress.step,
        "losses": torch.tensor(progress.losses, dtype=torch.float64),
        "seconds": progress.seconds}, directory / store.STATE_FILE)
    job.export(directory / job.weights_file)
    complete = progress.epoch >= job.epochs
    sha = sha256_file(directory / job.weights_file) if complete else None
    store.write_info(directory, {**info, "epochs_done": progress.epoch, "steps": progress.step,
                                 "train_seconds": round(progress.seconds, 2),
                                 "complete": complete, "weights_file": job.weights_file,
                                 "weights_sha256": sha})
    plot_losses(progress.losses, progress.epoch, directory / store.CURVE_FILE,
                f"{job.title}: {directory.name}", job.loss_name)


def plot_losses(losses: list[float], epochs: int, path: Path, title: str,
                ylabel: str = "loss") -> None:
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
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
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
