"""Meta-training of the VRP encoder on a fold's base classes (VRP-SAM: ``train.py``).

Recipe (official defaults): AdamW (lr 1e-4, weight decay 1e-6, betas 0.9/0.999) over the
three learnable modules, cosine annealing stepped every iteration over all epochs, loss
BCE + Dice at the encoder input size, 1-shot episodes, seed 321, 50 epochs, batch 8.

Episodes come from the dataset's base-only ``train`` view
(:meth:`~refseg_bench.datasets.base.FoldedDataset.base_only_training`: no image with a novel
class, like VRP-SAM's BAM-filtered lists), drawn by the shared sampler
(:mod:`refseg_bench.trained.data`). ``sampler`` chooses how: ``file_order`` (the harness
default: one pass over the training queries per epoch, the class drawn among the query's
base classes, as the official PASCAL loader), ``class_uniform`` (class first, as the
official COCO loader), or ``official`` (whichever of the two the official loader of the
dataset uses: ``class_uniform`` on COCO-20i, ``file_order`` elsewhere).

Randomness is per step and scoped: dropout draws from a generator seeded by
``(seed, step)`` inside ``torch.random.fork_rng``, and each epoch's episodes come from the
sampler seeded by ``(seed, epoch)``, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from refseg_bench.episodes import Annotation, Episode
from refseg_bench.methods.vrpsam.inputs import episode_tensors, label_tensor
from refseg_bench.methods.vrpsam.losses import vrp_loss
from refseg_bench.methods.vrpsam.network import VRPSAMNet

SAMPLERS = ("file_order", "class_uniform", "official")
# The official loaders' episode rule per dataset (VRP-SAM data/pascal.py, data/coco.py).
OFFICIAL_SAMPLER = {"coco20i": "class_uniform"}


@dataclass(frozen=True)
class TrainSettings:
    """Training hyperparameters (official values as defaults; ``epochs`` and
    ``episodes_per_epoch`` are the budget knobs). ``episodes_per_epoch=None``: as many
    episodes as the fold has training queries."""

    epochs: int = 50
    episodes_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 321
    shot: int = 1
    sampler: str = "file_order"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"train.sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        if min(self.epochs, self.batch_size, self.shot) < 1:
            raise ValueError("train.epochs, train.batch_size and train.shot must be >= 1")

    def sampler_for(self, dataset: str) -> str:
        """The episode rule used on ``dataset`` (resolves ``official``)."""
        if self.sampler != "official":
            return self.sampler
        return OFFICIAL_SAMPLER.get(dataset, "file_order")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


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


def with_training_clicks(episodes: list[Episode]) -> list[Episode]:
    """Each episode's point annotations re-drawn in training mode, seeded by the episode."""
    for e in episodes:
        rng = np.random.default_rng([e.spec.seed, 1])
        e.annotations = [training_annotation(a, rng) for a in e.annotations]
    return episodes


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
