"""FSSAM's training as a :class:`~refseg_bench.trained.loop.TrainJob`: the shared loop
checkpoints, resumes, plots and shows progress; this module supplies the episodes, the
step and the official export format (:mod:`.store`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.methods.fss_sam2 import store
from refseg_bench.methods.fss_sam2.network import FSSAMNet
from refseg_bench.methods.fss_sam2.settings import TrainSettings
from refseg_bench.methods.fss_sam2.trainer import make_optimizer, train_step, training_batch
from refseg_bench.trained.data import epoch_specs, iter_batches
from refseg_bench.trained.loop import TrainJob


class FSSAMTrainJob(TrainJob):
    """Meta-training of the decoder, memory encoder and memory attention on ``fold``'s base
    classes. ``dataset`` must be the base-only view; ``num_workers`` loader processes
    (speed only). Training always reads full support labels (FSSAM trains on masks only),
    whatever annotation the evaluation will use."""

    weights_file = store.WEIGHTS_FILE
    loss_name = "Dice"

    def __init__(self, net: FSSAMNet, dataset: FoldedDataset, fold: int,
                 settings: TrainSettings, autocast: Callable, num_workers: int = 0) -> None:
        self.net, self.dataset, self.fold = net, dataset, fold
        self.settings, self.autocast, self.num_workers = settings, autocast, num_workers
        self.epochs = settings.epochs
        self.title = f"fss_sam2 fold {fold}"
        self._epoch = 0
        self._opt = None

    def steps_per_epoch(self) -> int:
        n = self.settings.episodes_per_epoch or len(self.dataset.query_items(self.fold, "train"))
        return math.ceil(n / self.settings.batch_size)

    def learnable_state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v.detach().cpu().clone()
                for name, m in self.net.model.learnable_modules().items()
                for k, v in m.state_dict().items()}

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, module in self.net.model.learnable_modules().items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                    if k.startswith(prefix)}, strict=True)

    def optimizer(self, total_steps: int):
        self._opt, sched = make_optimizer(self.net, self.settings, total_steps)
        return self._opt, sched

    def epoch_batches(self, epoch: int):
        s = self.settings
        self._epoch = epoch
        specs = epoch_specs(self.dataset, self.fold, shot=s.shot, n=s.episodes_per_epoch,
                            seed=s.seed, epoch=epoch, sampler=s.sampler_for(self.dataset.name))
        # "mask": training episodes always carry the support labels FSSAM trains on
        for episodes, labels in iter_batches(self.dataset, specs, "mask", s.batch_size,
                                             self.num_workers):
            yield training_batch(episodes, labels, self.net.image_size, s, epoch)

    def train_step(self, batch, step: int, opt, sched) -> float:
        tensors, target = batch
        return train_step(self.net, tensors, target, opt, sched, self.settings.seed, step,
                          self.autocast)

    def export(self, path: Path) -> None:
        optimizer = self._opt.state_dict() if self._opt is not None else {}
        store.save_checkpoint(self.net.model, path, self._epoch + 1, optimizer)

    def finish(self) -> None:
        self.net.model.eval()
