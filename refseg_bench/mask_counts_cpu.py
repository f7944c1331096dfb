"""The CPU pixel-counting kernel behind ``refseg_bench.scorer.episode_totals``.

One episode at a time, in a few whole-array NumPy passes: NumPy's SIMD loops cost about a
microsecond per call where torch's CPU dispatch costs several, and no pass runs a Python
loop over pixels. Per episode, with ``lab1 = label + 1`` (uint8 wraps, so 0 = ignore,
1 = background, 2 = foreground) and ``q = fg_pred * lab1``:

- ``count_nonzero(lab1)`` = valid pixels and ``sum(lab1)`` = valid + foreground;
- ``count_nonzero(q)`` = predicted foreground on valid pixels and ``sum(q)`` = that + the
  true positives.

``sum`` of a byte plane holding 0-2 is a word-level sum: the plane is read as uint64 words
(8 pixels each) and added in runs of ``_WORDS_PER_CHUNK`` words, so no byte lane exceeds
254 and none carries into the next; the 8 lanes are then added up.

The prediction is read once to threshold it and once to check that it is a probability.
Both passes read it in its own dtype: a method that hands over a bool mask (PerSAM's hard
masks) costs one byte per pixel and no threshold at all; float16 / bfloat16 probabilities
are compared as their 16-bit patterns (exact, see ``_foreground``), half the bytes of
float32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

# 127 * 2 = 254 <= 255: a byte lane of 0-2 values never overflows. (The torch path stops at
# 63 to keep its int64 words non-negative; NumPy adds uint64.) Longer runs halve the lanes
# left to add byte by byte, NumPy's slow widening sum.
_WORDS_PER_CHUNK = 127
_CHUNK = 8 * _WORDS_PER_CHUNK  # pixels per word run; a plane is padded to a multiple of it
_ONE_BITS = {torch.float32: 0x3F800000, torch.float16: 0x3C00, torch.bfloat16: 0x3F80}


def count_totals_cpu(preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], *,
                     size: int | None, ignore: bool, threshold: float) -> torch.Tensor:
    """``(B, 4)`` int64 ``[fg_inter, fg_union, bg_inter, bg_union]`` on the CPU.

    ``preds``/``labels``: shape-checked ``(H_i, W_i)`` CPU tensors, labels uint8; label
    values and the prediction range are checked here, in the passes that read them.
    """
    from refseg_bench.mask_counts import raise_bad_labels, resize_episode

    n_max = max((p.numel() if size is None else size * size for p in preds), default=0)
    work = np.zeros((2, -(-n_max // _CHUNK) * _CHUNK), np.uint8)  # lab1 and q, reused
    rows = []
    for i, (pred, label) in enumerate(zip(preds, labels, strict=True)):
        label = label.cpu()
        if size is not None:  # check the label before resizing hides some of its pixels
            # (uint8 wraps: 255 + 1 == 0, so a label is valid iff label + 1 <= 2)
            if label.numel() and np.add(label.numpy(), 1, dtype=np.uint8).max() > 2:
                raise_bad_labels([label], first_index=i)
            # Checked before resizing, which could pull a bad value back into [0, 1]; and
            # not after, as bilinear weights may round an all-ones patch to 1 + 1 ulp.
            if not _quick_range_ok(pred):
                _check_range(pred, i)
            pred, label = resize_episode(pred, label, size)
        rows.append(_episode(pred, label, i, work, ignore=ignore, threshold=threshold,
                             checked=size is not None))
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)


def _episode(pred: torch.Tensor, label: torch.Tensor, index: int, work: np.ndarray, *,
             ignore: bool, threshold: float, checked: bool) -> tuple[int, int, int, int]:
    """Totals of one episode; ``work``: ``(2, >= padded size)`` uint8 scratch;
    ``checked``: the prediction's range was already checked.

    Each NumPy or torch call costs about a microsecond besides its pixels (some 20 per
    episode: a sixth to a quarter of a PASCAL-sized episode's time), so each input is
    converted to NumPy once and imports wait for the error path."""
    lab = label.numpy().reshape(-1)
    n = lab.size
    if n == 0:
        return 0, 0, 0, 0
    m = -(-n // _CHUNK) * _CHUNK
    lab1, q = work[0, :m], work[1, :m]
    np.add(lab, 1, out=lab1[:n])
    lab1[n:] = 0  # padding: never valid
    if lab1.max() > 2:  # a value outside {0, 1, 255}
        from refseg_bench.mask_counts import raise_bad_labels

        raise_bad_labels([label], first_index=index)
    fg_pred = _foreground(pred, index, threshold, checked)
    np.multiply(fg_pred.view(np.uint8), lab1[:n], out=q[:n])
    q[n:] = 0
    valid, pred_valid = np.count_nonzero(lab1), np.count_nonzero(q)
    sum_lab1, sum_q = _byte_sums(work[:, :m])
    n_fg, inter = sum_lab1 - valid, sum_q - pred_valid
    if not ignore:  # 255 is background: every pixel is valid
        valid, pred_valid = n, np.count_nonzero(fg_pred)
    union = pred_valid + n_fg - inter
    return inter, union, valid - union, valid - inter


def _byte_sums(planes: np.ndarray) -> list[int]:
    """Row sums of ``(K, L)`` uint8 planes of 0-2 values, ``L`` a multiple of ``_CHUNK``.

    Words ``j, j + L/1016, j + 2 L/1016, ...`` (127 of them) are added: summing along the
    leading axis adds whole rows elementwise, NumPy's fastest reduction."""
    k = planes.shape[0]
    words = planes.view(np.uint64).reshape(k, _WORDS_PER_CHUNK, -1)
    runs = words.sum(axis=1, dtype=np.uint64)  # (K, L / 1016), byte lanes <= 254
    return runs.view(np.uint8).reshape(k, -1).sum(axis=1, dtype=np.int64).tolist()


def _foreground(pred: torch.Tensor, index: int, threshold: float,
                checked: bool = False) -> np.ndarray:
    """``pred > threshold`` as a flat bool array, the prediction range checked (unless
    ``checked``). The comparison is in the prediction's dtype with the threshold cast to
    it, as torch compares a tensor with a Python number (``torch.gt`` on an accelerator
    gives the same answer).

    Float32 and half-precision probabilities are read once as unsigned bit patterns, for
    the quick range test (``_quick_range_ok``), and once as values (float32) or patterns
    (half: for non-negative values the unsigned patterns are ordered like the values, so
    ``bits(x) > bits(t)`` is exactly ``x > t``). Anything that fails the quick test
    (including -0.0, whose pattern has the sign bit) takes the exact float path instead.
    """
    t = pred.detach()
    dtype = t.dtype
    if dtype == torch.bool:
        mask = t.numpy().reshape(-1)
        return mask if 0 <= threshold < 1 else np.full(mask.shape, threshold < 0)
    if not t.is_floating_point():  # an integer 0/1 mask: rare, so torch's own comparison
        return torch.gt(t, threshold).numpy().reshape(-1)
    if dtype in (torch.float16, torch.bfloat16):
        cut_bits = _half_cut_bits(dtype, threshold)
        # Not after resizing: an all -0.0 patch stays -0.0, whose pattern is not ordered.
        if cut_bits is not None and not checked:
            # NumPy has float16 but no bfloat16; a torch view costs a few microseconds
            raw = t.numpy() if dtype == torch.float16 else t.view(torch.int16).numpy()
            bits = raw.reshape(-1).view(np.uint16)
            if bits.max(initial=0) <= _ONE_BITS[dtype]:
                return np.greater(bits, cut_bits)
        t = t.float()
    values = t.numpy().reshape(-1)
    if not checked and not _range_ok_flat(values):
        _check_range(t, index)  # exact: -0.0 is a false alarm of the quick test
    # The cut of the prediction's own dtype (a half's cut is exact in float32 too).
    return np.greater(values, _cut(dtype, threshold))


def _quick_range_ok(pred: torch.Tensor) -> bool:
    """Whether a CPU prediction is surely in [0, 1], in one NumPy pass: float patterns
    read as unsigned ints keep the order of non-negative values, and negatives and NaN
    map above 1.0's pattern. False may be a false alarm (-0.0): check exactly then."""
    t = pred.detach()
    if not t.is_floating_point() or t.numel() == 0:
        return True
    if t.dtype in (torch.float16, torch.bfloat16):
        return bool(t.view(torch.int16).numpy().view(np.uint16).max() <= _ONE_BITS[t.dtype])
    return _range_ok_flat(t.numpy())


def _range_ok_flat(values: np.ndarray) -> bool:
    """``_quick_range_ok`` of a float32 or float64 array."""
    if values.dtype == np.float32:
        return bool(values.view(np.uint32).max(initial=0) <= _ONE_BITS[torch.float32])
    return bool(values.min(initial=0) >= 0 and values.max(initial=0) <= 1)


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
