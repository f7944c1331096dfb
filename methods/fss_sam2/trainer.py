"""One training step of FSSAM (``train.py``): batches, optimiser and schedule.

- Optimiser: AdamW over the three modules of ``get_optim`` (mask decoder, memory encoder,
  memory attention), one parameter group each. In the official forward only the memory
  attention and the mask decoder receive gradients: image features are computed under
  ``no_grad`` (so the decoder's ``conv_s0``/``conv_s1`` projections never change) and
  memories under ``inference_mode`` (so the memory encoder never changes either). The same
  holds here; those parameters stay in the optimiser, as officially, and keep their values.
- Schedule: poly, ``lr * (1 - it / max_it) ** power`` with ``it`` counted from 1, set before
  every step (``poly_learning_rate``).
- Loss: Dice (:mod:`.losses`) on the logits at the input size.
- Mode: ``sam2.train()`` (dropout 0.1 in the memory attention, as ``model.train()``),
  seeded per step inside ``torch.random.fork_rng`` so a resumed run repeats exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from refseg_bench.methods.fss_sam2.augment import augment
from refseg_bench.methods.fss_sam2.inputs import (
    EpisodeTensors,
    foreground,
    image_tensor,
    label_tensor,
)
from refseg_bench.methods.fss_sam2.losses import dice_loss
from refseg_bench.methods.fss_sam2.network import FSSAMNet
from refseg_bench.methods.fss_sam2.settings import TrainSettings


def _pair(image: np.ndarray, label: np.ndarray, size: int, settings: TrainSettings,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if not settings.augment:
        return image_tensor(image, size), label_tensor(label, size)
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float()
    return augment(x, torch.from_numpy(np.ascontiguousarray(label)), size, rng,
                   settings.scale, settings.rotate)


def training_batch(episodes, labels: list[np.ndarray], size: int, settings: TrainSettings,
                   epoch: int) -> tuple[EpisodeTensors, torch.Tensor]:
    """Episodes with support labels and their query labels -> network inputs and the
    ``(B, size, size)`` uint8 target. Each image is augmented independently, seeded by
    ``(seed, epoch, episode index, image slot)``."""
    queries, targets, supports, masks = [], [], [], []
    for e, lab in zip(episodes, labels, strict=True):
        if e.support_masks is None:
            raise ValueError("training episodes must carry support labels "
                             "(refseg_bench.trained.data keeps them)")
        rng = np.random.default_rng([settings.seed, epoch, e.spec.index])
        q, t = _pair(e.query_image, lab, size, settings, rng)
        pairs = [_pair(im, m, size, settings, rng)
                 for im, m in zip(e.support_images, e.support_masks, strict=True)]
        queries.append(q)
        targets.append(t)
        supports.append(torch.stack([p[0] for p in pairs]))
        masks.append(torch.stack([foreground(p[1]) for p in pairs]))
    cache = not settings.augment  # unaugmented images may use the frozen-feature cache
    tensors = EpisodeTensors(
        torch.stack(queries), torch.stack(supports), torch.stack(masks),
        [e.query_size for e in episodes],
        [e.query_image for e in episodes] if cache else None,
        [im for e in episodes for im in e.support_images] if cache else None)
    return tensors, torch.stack(targets)


def make_optimizer(net: FSSAMNet, settings: TrainSettings, total_steps: int):
    """AdamW with one group per learnable module and the poly schedule over
    ``total_steps``."""
    groups = [{"params": list(m.parameters())} for m in net.model.learnable_modules().values()]
    opt = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay,
                            betas=tuple(settings.betas))
    total, power = max(total_steps, 1), settings.power

    def poly(step: int) -> float:  # step 0 is official iteration 1
        return max(0.0, 1.0 - (step + 1) / total) ** power

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, poly)


def train_step(net: FSSAMNet, batch: EpisodeTensors, target: torch.Tensor, opt, sched,
               seed: int, step: int, autocast) -> float:
    """One optimisation step; returns the loss. ``autocast``: a context factory for the
    forward (bf16 on CUDA)."""
    device = net.device
    batch, target = batch.to(device), target.to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed * 1_000_003 + step)
        net.model.sam2.train()
        with autocast():
            logits = net.logits(batch)
        loss = dice_loss(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())
