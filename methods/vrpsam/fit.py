"""VRP-SAM's training as a :class:`~refseg_bench.trained.loop.TrainJob`: the shared loop
checkpoints, resumes, plots and shows progress; this module supplies the episodes, the
step and the official export format (:mod:`.store`)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.methods.vrpsam import store
from refseg_bench.methods.vrpsam.network import VRPSAMNet
from refseg_bench.methods.vrpsam.trainer import (
    TrainSettings,
    make_optimizer,
    train_step,
    with_training_clicks,
)
from refseg_bench.trained.data import epoch_specs, iter_batches
from refseg_bench.trained.loop import TrainJob


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes and values): tells whether the frozen
    models a checkpoint was trained against are the ones loaded now."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


class VRPTrainJob(TrainJob):
    """Meta-training of ``net.encoder`` on ``fold``'s base classes. ``dataset`` must be the
    base-only view; ``num_workers`` loader processes (speed only)."""

    weights_file = store.ENCODER_FILE
    loss_name = "BCE + Dice"

    def __init__(self, net: VRPSAMNet, dataset: FoldedDataset, fold: int, annotation: str,
                 settings: TrainSettings, num_workers: int = 0) -> None:
        self.net, self.dataset, self.fold, self.annotation = net, dataset, fold, annotation
        self.settings, self.num_workers = settings, num_workers
        self.epochs = settings.epochs
        self.title = f"vrpsam fold {fold}"

    def steps_per_epoch(self) -> int:
        n = self.settings.episodes_per_epoch or len(self.dataset.query_items(self.fold, "train"))
        return math.ceil(n / self.settings.batch_size)

    def learnable_state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v.detach().cpu().clone()
                for name, m in self.net.encoder.learnable_modules().items()
                for k, v in m.state_dict().items()}

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net.encoder.load_state_dict(state, strict=False)

    def optimizer(self, total_steps: int):
        return make_optimizer(self.net, self.settings, total_steps)

    def specs(self, epoch: int):
        s = self.settings
        return epoch_specs(self.dataset, self.fold, shot=s.shot, n=s.episodes_per_epoch,
                           seed=s.seed, epoch=epoch, sampler=s.sampler_for(self.dataset.name))

    def epoch_batches(self, epoch: int):
        for episodes, labels in iter_batches(self.dataset, self.specs(epoch), self.annotation,
                                             self.settings.batch_size, self.num_workers):
            yield with_training_clicks(episodes), labels

    def train_step(self, batch, step: int, opt, sched) -> float:
        episodes, labels = batch
        return train_step(self.net, episodes, labels, opt, sched, self.settings.seed, step)

    def export(self, path: Path) -> None:
        store.save_encoder(self.net.encoder, path)

    def finish(self) -> None:
        self.net.encoder.eval()
