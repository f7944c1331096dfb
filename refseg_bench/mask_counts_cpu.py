"""The CPU pixel-counting kernel behind ``refseg_bench.scorer.episode_totals``.

One episode at a time, one compiled pass (Numba) over the prediction and the label that
counts everything at once: valid pixels, true foreground, predicted foreground on valid
pixels, true positives, and flags for a label outside {0, 1, 255} and a probability
outside [0, 1]. Whole-array NumPy passes cannot fuse: each count re-reads the planes and
writes temporaries, which bounded the previous NumPy kernel at about half the speed of one
read of the inputs.

The cost is the bytes read, so it depends on what the method hands over:

- bool masks (a method's own ``p > 0.5``, in its dtype, gives the same counts): read 8
  pixels per 64-bit word of prediction and of label, counted with bit arithmetic
  (``add_bool``);
- float16 / bfloat16 probabilities: compared as their 16-bit patterns, which order like
  the values for non-negative numbers (-0.0 and anything outside [0, 1] take the float
  path, which decides exactly);
- float32 / float64 probabilities: compared as values.

Probabilities are thresholded a block at a time into a byte scratch, which is then counted
like a bool mask (``add_bool``).

The kernels live in ``refseg_bench.mask_kernels``; each is compiled on first use and
cached on disk next to it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

_ONE_BITS = {torch.float16: 0x3C00, torch.bfloat16: 0x3F80}


def _kernels():
    """The compiled kernels (Numba is imported, and the kernels loaded from their on-disk
    cache or compiled, on first use rather than at import)."""
    from refseg_bench import mask_kernels

    return mask_kernels.bool_counts, mask_kernels.above_counts


def count_totals_cpu(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], *,
                     size: int | None, ignore: bool, threshold: float) -> torch.Tensor:
    """``(B, 4)`` int64 ``[fg_inter, fg_union, bg_inter, bg_union]`` on the CPU.

    ``preds``/``labels``: shape-checked ``(H_i, W_i)`` CPU tensors, labels uint8; label
    values and the prediction range are checked here, in the pass that reads them.
    """
    from refseg_bench.mask_counts import resize_episode

    rows, out = [], np.zeros(7, np.int64)
    for i, (pred, label) in enumerate(zip(preds, labels, strict=True)):
        label = label.cpu()
        if size is not None:
            # Checked before resizing, which could hide a bad label value or pull a bad
            # probability back into [0, 1]; and not after, as bilinear weights may round an
            # all-ones patch to 1 + 1 ulp.
            _check_label(label, i)
            _check_range(pred, i)
            pred, label = resize_episode(pred, label, size)
        rows.append(_episode(pred, label, i, out, ignore=ignore, threshold=threshold,
                             checked=size is not None))
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)


def _episode(pred: torch.Tensor, label: torch.Tensor, index: int, out: np.ndarray, *,
             ignore: bool, threshold: float, checked: bool) -> tuple[int, int, int, int]:
    """Totals of one episode; ``out``: ``(7,)`` int64 scratch for the kernel's counts;
    ``checked``: the prediction's range was already checked."""
    lab = label.numpy().reshape(-1)
    n = lab.size
    if n == 0:
        return 0, 0, 0, 0
    _count(pred.detach(), lab, index, out, threshold, checked)
    if out[5]:
        from refseg_bench.mask_counts import raise_bad_labels

        raise_bad_labels([label], first_index=index)
    valid, n_fg, pred_valid, inter, n_pred = (int(v) for v in out[:5])
    if not ignore:  # 255 is background: every pixel is valid
        valid, pred_valid = n, n_pred
    union = pred_valid + n_fg - inter
    return inter, union, valid - union, valid - inter


def _count(t: torch.Tensor, lab: np.ndarray, index: int, out: np.ndarray, threshold: float,
           checked: bool) -> None:
    """Fills ``out`` with the kernel's counts of prediction ``t`` (any dtype) and ``lab``;
    raises if a float prediction is outside [0, 1] (unless ``checked``)."""
    bool_counts, above_counts = _kernels()
    dtype = t.dtype
    if not t.is_floating_point():
        if dtype != torch.bool:  # an integer 0/1 mask: rare, so torch's own comparison
            t = torch.gt(t, threshold)
        elif not 0 <= threshold < 1:
            t = torch.full(t.shape, threshold < 0)  # every pixel, or none, is above it
        return bool_counts(t.numpy().reshape(-1).view(np.uint8), lab, out)
    if dtype in (torch.float16, torch.bfloat16):
        cut_bits = _half_cut_bits(dtype, threshold)
        if cut_bits is not None:
            bits = t.view(torch.int16).numpy().reshape(-1).view(np.uint16)
            above_counts(bits, lab, np.uint16(cut_bits), np.uint16(_ONE_BITS[dtype]), out)
            if not out[6]:
                return None
        t = t.float()  # outside [0, 1], -0.0 or a negative threshold: decide on the values
    values = t.numpy().reshape(-1)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float32)
    kind = values.dtype.type
    above_counts(values, lab, kind(_cut(dtype, threshold)), kind(1), out)
    if out[6] and not checked:
        _check_range(t, index)
    return None


def _check_label(label: torch.Tensor, index: int) -> None:
    """Raise unless every value of a uint8 label is 0, 1 or 255 (one NumPy pass: uint8
    wraps, so a label is valid iff label + 1 <= 2)."""
    if label.numel() and np.add(label.numpy(), 1, dtype=np.uint8).max() > 2:
        from refseg_bench.mask_counts import raise_bad_labels

        raise_bad_labels([label], first_index=index)


@functools.lru_cache(maxsize=64)
def _cut(dtype: torch.dtype, threshold: float) -> float:
    """The threshold cast to a float ``dtype`` as torch casts a Python number."""
    if not dtype.is_floating_point:
        return threshold
    return float(torch.tensor(threshold, dtype=torch.float64).to(dtype))


@functools.lru_cache(maxsize=64)
def _half_cut_bits(dtype: torch.dtype, threshold: float) -> int | None:
    """Bit pattern of the threshold cast to a 16-bit float ``dtype``; None when negative
    or NaN (the pattern order then breaks)."""
    cut = torch.tensor(threshold, dtype=torch.float64).to(dtype)
    return int(cut.view(torch.int16)) & 0xFFFF if bool(cut >= 0) else None


def _check_range(pred: torch.Tensor, index: int) -> None:
    """Raise unless every value of a float prediction is in [0, 1] (NaN is not)."""
    from refseg_bench.mask_counts import ScoringError

    if not pred.is_floating_point() or pred.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(pred.detach().float()))
    if not (low >= 0 and high <= 1):  # also catches NaN
        raise ScoringError(
            f"episode {index}: prediction has values in [{low:g}, {high:g}], expected "
            "foreground probabilities in [0, 1]; apply sigmoid/softmax to logits in the "
            "adapter.")
