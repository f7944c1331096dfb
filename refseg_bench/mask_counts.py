"""The pixel-counting kernels behind ``refseg_bench.scorer.episode_totals``.

On the CPU, ``refseg_bench.mask_counts_cpu`` counts one episode at a time with NumPy. On
an accelerator (this module) a batch of episodes is packed into one byte workspace, a few
whole-batch byte operations derive the planes to count, and a word-level sum counts them
per episode: a handful of kernel launches per batch instead of several per episode.
Conventions (threshold, ignore, resizing) are documented in ``refseg_bench.scorer``.

Layout: each episode is a flat segment padded to a multiple of ``_CHUNK`` with label 255
(never valid) and prediction 0. Flat segments waste nothing on mixed orientations, unlike
padding to the batch's max height and width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Byte planes holding 0, 1 or 2 are summed as int64 words, 8 pixels per word. Summing at
# most 63 words keeps every byte lane <= 126, so no lane carries into the next one and the
# word stays below 2**63 (no signed overflow); the 8 lanes are then added up.
_WORDS_PER_CHUNK = 63
_CHUNK = 8 * _WORDS_PER_CHUNK  # pixels per chunk; every episode segment is padded to it


class ScoringError(ValueError):
    """Predictions, labels or class ids handed to the scorer are malformed. This is a bug in
    the adapter or dataset that produced them; the message says which episode and why."""


def count_totals(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                 device: torch.device, *, size: int | None, ignore: bool,
                 threshold: float) -> torch.Tensor:
    """``(B, 4)`` int64 ``[fg_inter, fg_union, bg_inter, bg_union]`` on ``device``.

    ``preds``/``labels`` are shape-checked ``(H_i, W_i)`` pairs (labels uint8), preds on
    ``device``; label values and the prediction range are checked here, in the same pass
    that reads them.
    """
    if device.type == "cpu":
        from refseg_bench.mask_counts_cpu import count_totals_cpu

        return count_totals_cpu(preds, labels, size=size, ignore=ignore, threshold=threshold)
    return count_totals_torch(preds, labels, device, size=size, ignore=ignore,
                              threshold=threshold)


def count_totals_torch(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                       device: torch.device, *, size: int | None, ignore: bool,
                       threshold: float) -> torch.Tensor:
    """``count_totals`` with torch ops on any device (the accelerator path; tests run it on
    the CPU too): the whole batch in one workspace."""
    n_pixels = [int(p.numel()) if size is None else size * size for p in preds]
    seg = [-(-n // _CHUNK) * _CHUNK for n in n_pixels]
    work = torch.empty((5, sum(seg)), dtype=torch.uint8, device=device)
    return _count_block(preds, labels, 0, work, seg, size=size, ignore=ignore,
                        threshold=threshold)


def _count_block(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], first: int,
                 work: torch.Tensor, seg: list[int], *, size: int | None, ignore: bool,
                 threshold: float) -> torch.Tensor:
    """``(b, 4)`` totals of episodes ``first, first + 1, ...``; ``seg``: padded lengths."""
    device, used = work.device, sum(seg)
    if used == 0:  # only empty images: nothing to count (and no bytes to view as words)
        return torch.zeros((len(seg), 4), dtype=torch.int64, device=device)
    # Rows: q = pred * lab1; tp = pred & fg; fg = lab1 >> 1; lab1 = label + 1 (uint8 wraps:
    # 0 = ignore or padding, 1 = background, 2 = foreground); pred (0/1).
    # Sums: sum(lab1) = valid + fg and sum(q) = pred on valid + tp. ignore=True sums rows
    # 0-3 and ignore=False rows 1-4: both windows are contiguous.
    work = work[:, :used]
    q, tp, fg, lab1, pred = work.unbind(0)
    in_range = _pack_torch(preds, labels, first, pred, lab1, seg, size=size,
                           threshold=threshold)
    _check_ranges(preds, in_range, first)
    if size is None and int(lab1.amax()) > 2:  # any label outside {0, 1, 255}
        raise_bad_labels(labels, first_index=first)
    torch.bitwise_right_shift(lab1, 1, out=fg)
    torch.bitwise_and(pred, fg, out=tp)
    chunk_episode = torch.repeat_interleave(
        torch.arange(len(seg), device=device), torch.tensor(seg, device=device) // _CHUNK)
    if ignore:
        torch.mul(pred, lab1, out=q)
        sum_q, inter, n_fg, sum_lab1 = _sum_bytes(work[0:4], chunk_episode, len(seg)).unbind(1)
        n_valid, pred_valid = sum_lab1 - n_fg, sum_q - inter
    else:  # 255 is background: every image pixel is valid, padding never is
        inter, n_fg, _, pred_valid = _sum_bytes(work[1:5], chunk_episode, len(seg)).unbind(1)
        n_valid = torch.tensor([p.numel() if size is None else size * size for p in preds],
                               dtype=torch.int64, device=device)
    union = pred_valid + n_fg - inter
    return torch.stack([inter, union, n_valid - union, n_valid - inter], dim=1)


def _pack_torch(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], first: int,
                pred_row: torch.Tensor, lab1_row: torch.Tensor, seg: list[int], *,
                size: int | None, threshold: float) -> list[bool | torch.Tensor]:
    """Write each episode's ``pred > threshold`` and ``label + 1`` (zero padding) into the
    rows with torch ops; range flags are left on the device (one sync per batch)."""
    device, sizes, in_range = pred_row.device, [], []
    for p, s in zip(preds, seg, strict=True):
        n = p.numel() if size is None else size * size
        sizes += [n, s - n]
    pred_parts, lab1_parts = pred_row.split(sizes), lab1_row.split(sizes)
    for i, (p, la) in enumerate(zip(preds, labels, strict=True)):
        in_range.append(_in_unit_range(p))
        la = la.to(device)
        if size is not None:
            check_label(la, first + i)
            p, la = resize_episode(p, la, size)
        torch.gt(p.reshape(-1), threshold, out=pred_parts[2 * i].view(torch.bool))
        torch.add(la.reshape(-1), 1, out=lab1_parts[2 * i])
        pred_parts[2 * i + 1].zero_()
        lab1_parts[2 * i + 1].zero_()
    return in_range


def resize_episode(pred: torch.Tensor, label: torch.Tensor,
                   size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction bilinearly (align_corners=False) and label nearest to ``size x size``."""
    p = pred if pred.is_floating_point() else pred.to(torch.float32)
    p = F.interpolate(p[None, None], size=(size, size), mode="bilinear", align_corners=False)
    lab = F.interpolate(label[None, None], size=(size, size), mode="nearest")
    return p[0, 0], lab[0, 0]


def _in_unit_range(pred: torch.Tensor) -> bool | torch.Tensor:
    """Whether a prediction lies in [0, 1]: True for non-float masks, else a 0-dim bool
    tensor (read later, once per batch, to avoid a device sync per episode)."""
    if not pred.is_floating_point() or pred.numel() == 0:
        return True
    low, high = torch.aminmax(pred)
    return (low >= 0) & (high <= 1)


def _check_ranges(preds: Sequence[torch.Tensor], in_range: list, first: int) -> None:
    """Raise for the first prediction outside [0, 1] (logits are a common adapter bug)."""
    lazy = [f for f in in_range if isinstance(f, torch.Tensor)]
    synced = iter(torch.stack(lazy).tolist() if lazy else [])  # one sync for the block
    flags = [next(synced) if isinstance(f, torch.Tensor) else f for f in in_range]
    for i, (pred, ok) in enumerate(zip(preds, flags, strict=True), start=first):
        if ok:
            continue
        low, high = float(pred.min()), float(pred.max())  # exact, after the quick test
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise ScoringError(
                f"episode {i}: prediction has values in [{low:g}, {high:g}], expected "
                "foreground probabilities in [0, 1]; apply sigmoid/softmax to logits in the "
                "adapter.")


def check_label(label: torch.Tensor, index: int) -> None:
    """Raise unless ``label`` (uint8) holds only 0, 1 and 255."""
    # uint8 arithmetic wraps: 255 + 1 == 0, so a label is valid iff (label + 1) <= 2.
    if label.numel() and int((label + 1).amax()) > 2:
        raise_bad_labels([label], first_index=index)


def raise_bad_labels(labels: Sequence[torch.Tensor], first_index: int = 0) -> None:
    """Raise for the first label with a value outside {0, 1, 255}, naming the episode."""
    for i, lab in enumerate(labels, start=first_index):
        bad = [v for v in torch.unique(lab).tolist() if v not in (0, 1, 255)]
        if bad:
            raise ScoringError(
                f"episode {i}: label has values {bad[:10]}, expected only 0 (background), "
                "1 (episode class) and 255 (ignore); binarise the class mask in the dataset.")
    raise AssertionError("a label check failed but no episode has a bad value")


def _sum_bytes(planes: torch.Tensor, chunk_episode: torch.Tensor,
               n_episodes: int) -> torch.Tensor:
    """Sum byte planes per episode.

    Args:
        planes: ``(K, L)`` uint8 with values 0-2, rows contiguous, ``L`` a multiple of
            ``_CHUNK``.
        chunk_episode: ``(L // _CHUNK,)`` int64, the episode each chunk belongs to.
    Returns:
        ``(n_episodes, K)`` int64.
    """
    k = planes.shape[0]
    lane_sums = planes.view(torch.int64).view(k, -1, _WORDS_PER_CHUNK).sum(-1)
    chunk_sums = lane_sums.view(torch.uint8).view(k, -1, 8).sum(-1)  # (K, n_chunks)
    out = torch.zeros((n_episodes, k), dtype=torch.int64, device=planes.device)
    return out.index_add_(0, chunk_episode, chunk_sums.t())
