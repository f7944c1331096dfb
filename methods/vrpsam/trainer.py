"""Meta-training of the VRP encoder on a fold's base classes (VRP-SAM: ``train.py``).

Recipe (official defaults): AdamW (lr 1e-4, weight decay 1e-6, betas 0.9/0.999) over the
three learnable modules, cosine annealing stepped every iteration over all epochs, loss
BCE + Dice at the encoder input size, 1-shot episodes, seed 321, 50 epochs, batch 8.

Episodes come from the dataset's ``train`` split and its base classes only
(``classes(fold, "train")``), drawn by the shared sampler: each epoch is one pass over the
training query list in a freshly shuffled order, the class drawn among the base classes
present in the query, as the official PASCAL loader does. With ``exclude_novel_images``
(default, like VRP-SAM's BAM-filtered lists) an image that shows any novel class at all
is never used, not even as background.

Randomness is per step and scoped: dropout draws from a generator seeded by
``(seed, step)`` inside ``torch.random.fork_rng``, and each epoch's episodes come from the
sampler seeded by ``(seed, epoch)``, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.episodes import Annotation, Episode
from refseg_bench.loading import EpisodeDataset, collate
from refseg_bench.methods.vrpsam.inputs import episode_tensors, label_tensor
from refseg_bench.methods.vrpsam.losses import vrp_loss
from refseg_bench.methods.vrpsam.network import VRPSAMNet
from refseg_bench.protocols import Protocol
from refseg_bench.sampler import sample_episodes

TRAIN_PROTOCOL = Protocol(
    name="vrpsam-train", description="VRP-SAM training: every training query once per epoch, "
    "class drawn among its base classes, distinct supports", sampler="file_order",
    episodes=0, seed=321, distinct_supports=True, family="VRP-SAM")


@dataclass(frozen=True)
class TrainSettings:
    """Training hyperparameters (official values as defaults; ``epochs`` and
    ``episodes_per_epoch`` are the budget knobs). ``episodes_per_epoch=None``: one pass over
    the fold's training queries."""

    epochs: int = 50
    episodes_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 321
    shot: int = 1
    exclude_novel_images: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class TrainProgress:
    """Where training stands; ``losses`` holds one float per optimisation step."""

    epoch: int = 0  # completed epochs
    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


class BaseOnlyView(FoldedDataset):
    """A read-only view of ``dataset`` whose training lists drop every image that shows a
    novel class of ``fold`` (BAM's filter, used by VRP-SAM's lists). Other splits and the
    pixels pass through unchanged."""

    def __init__(self, dataset: FoldedDataset, fold: int) -> None:
        self.inner, self.fold = dataset, fold
        self.name, self.n_folds = dataset.name, dataset.n_folds
        self.root, self.options = dataset.root, dataset.options
        self._clean: dict[str, bool] = {}

    @property
    def class_names(self):
        return self.inner.class_names

    def classes(self, fold, split):
        return self.inner.classes(fold, split)

    def _keep(self, item: str) -> bool:
        if item not in self._clean:
            self._clean[item] = not self.inner.item_classes(self.fold, "val", item)
        return self._clean[item]

    def items(self, fold, split, class_id):
        items = self.inner.items(fold, split, class_id)
        return [i for i in items if self._keep(i)] if split == "train" else items

    def query_items(self, fold, split):
        items = self.inner.query_items(fold, split)
        return [i for i in items if self._keep(i)] if split == "train" else items

    def item_classes(self, fold, split, item):
        return self.inner.item_classes(fold, split, item)

    def load_image(self, item):
        return self.inner.load_image(item)

    def load_mask(self, item, class_id):
        return self.inner.load_mask(item, class_id)

    def fingerprint(self, fold, split):
        return self.inner.fingerprint(fold, split) + ("-base-only" if split == "train" else "")


def training_annotation(ann: Annotation, rng: np.random.Generator) -> Annotation:
    """VRP-SAM's training-mode clicks: ``k`` uniform in ``1 .. n`` of the ``n = min(20, area)``
    test-mode clicks (other kinds are already drawn per episode)."""
    if ann.kind != "point" or len(ann.points) <= 1:
        return ann
    k = int(rng.integers(1, len(ann.points) + 1))
    keep = np.sort(rng.choice(len(ann.points), size=k, replace=False))
    raster = np.zeros_like(ann.raster)
    pts = ann.points[keep]
    raster[pts[:, 1].astype(int), pts[:, 0].astype(int)] = True
    return Annotation("point", raster=raster, points=pts, point_labels=ann.point_labels[keep])


def epoch_episodes(dataset: FoldedDataset, fold: int, settings: TrainSettings, epoch: int):
    """The epoch's episode specs in training order (a pure function of its arguments)."""
    n = settings.episodes_per_epoch or len(dataset.query_items(fold, "train"))
    seed = settings.seed * 1000 + epoch
    specs = list(sample_episodes(dataset, fold, "train", settings.shot, n, seed,
                                 TRAIN_PROTOCOL).episodes)
    order = np.random.default_rng([settings.seed, epoch]).permutation(len(specs))
    return [specs[i] for i in order]


def iter_batches(dataset: FoldedDataset, specs, annotation: str, batch_size: int,
                 num_workers: int = 0) -> Iterator[tuple[list[Episode], list[np.ndarray]]]:
    """Load training episodes in batches: (episodes, query labels), in ``specs`` order.
    ``num_workers`` loader processes decode images in parallel; every episode is fixed by
    its spec, so the worker count never changes what is trained on. Episodes whose support
    cannot be annotated (no foreground) are dropped."""
    loader = torch.utils.data.DataLoader(
        EpisodeDataset(dataset, list(specs), annotation), batch_size=batch_size,
        num_workers=num_workers, collate_fn=collate)
    for batch in loader:
        episodes, labels = [], []
        for loaded in batch:
            if loaded.episode is None:
                continue
            rng = np.random.default_rng([loaded.spec.seed, 1])
            loaded.episode.annotations = [training_annotation(a, rng)
                                          for a in loaded.episode.annotations]
            episodes.append(loaded.episode)
            labels.append(loaded.label)
        if episodes:
            yield episodes, labels


def steps_per_epoch(dataset: FoldedDataset, fold: int, settings: TrainSettings) -> int:
    n = settings.episodes_per_epoch or len(dataset.query_items(fold, "train"))
    return math.ceil(n / settings.batch_size)


def make_optimizer(net: VRPSAMNet, settings: TrainSettings, total_steps: int):
    groups = [{"params": list(m.parameters())} for m in net.encoder.learnable_modules().values()]
    opt = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay,
                            betas=tuple(settings.betas))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return opt, sched


def train_step(net: VRPSAMNet, episodes: list[Episode], labels: list[np.ndarray], opt, sched,
               seed: int, step: int) -> float:
    """One optimisation step on a batch; returns the loss. Dropout is seeded by (seed, step)."""
    device = net.device
    batch = episode_tensors(episodes, net.image_size).to(device)
    target = torch.stack([label_tensor(lab, net.image_size) for lab in labels]).to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed * 1_000_003 + step)
        net.encoder.train()
        loss = vrp_loss(net.logits(batch, [e.query_image for e in episodes]), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def run_epochs(net: VRPSAMNet, dataset: FoldedDataset, fold: int, annotation: str,
               settings: TrainSettings, opt, sched, progress: TrainProgress,
               on_step: Callable[[TrainProgress], None], on_epoch: Callable[[TrainProgress], None],
               num_workers: int = 0) -> TrainProgress:
    """Train from ``progress.epoch`` to ``settings.epochs``, calling ``on_step`` after every
    step and ``on_epoch`` after every epoch (checkpointing happens there)."""
    if settings.exclude_novel_images:
        dataset = BaseOnlyView(dataset, fold)
    for epoch in range(progress.epoch, settings.epochs):
        t0 = time.perf_counter()
        specs = epoch_episodes(dataset, fold, settings, epoch)
        batches = iter_batches(dataset, specs, annotation, settings.batch_size, num_workers)
        for episodes, labels in batches:
            loss = train_step(net, episodes, labels, opt, sched, settings.seed, progress.step)
            progress.step += 1
            progress.losses.append(loss)
            on_step(progress)
        progress.epoch = epoch + 1
        progress.seconds += time.perf_counter() - t0
        on_epoch(progress)
    net.encoder.eval()
    return progress
