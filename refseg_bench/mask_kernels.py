"""Numba kernels of the CPU scorer (``refseg_bench.mask_counts_cpu`` says what they count
and why). Compiled on first use per dtype, cached on disk next to this module."""

from __future__ import annotations

import numba
import numpy as np

# Pixels thresholded at a time into a byte scratch (it stays in the L1 cache) before the
# word-level count: a per-pixel loop with five 64-bit counters vectorises poorly.
_BLOCK = 4096
_LSB = np.uint64(0x0101010101010101)  # the low bit of each byte
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGH = np.uint64(0x8080808080808080)
_ABOVE1 = np.uint64(0xFCFCFCFCFCFCFCFC)  # byte bits that a value <= 3 never sets
_TOP = np.uint64(56)
_ONE = np.uint64(1)

_jit = numba.njit(cache=True, nogil=True)


@_jit
def add_bool(pred, lab, acc):
    """Adds the counts of ``pred`` (``(n,)`` uint8 0/1) and ``lab`` (``(n,)`` uint8) to
    ``acc`` = [valid, fg, pred on valid, tp, pred, bad label] (``(>= 6,)`` int64). Eight
    pixels per word: ``lab + 1`` per byte without carries (255 -> 0 = ignore, 0 -> 1,
    1 -> 2), whose two low bits give the valid and foreground bits; a product by ``_LSB``
    adds the eight byte bits into the top byte."""
    n8 = pred.size // 8 * 8
    pw, lw = pred[:n8].view(np.uint64), lab[:n8].view(np.uint64)
    valid = fg = pv = tp = npred = bad = np.uint64(0)  # (an int64 would mix to float)
    for i in range(lw.size):
        word, p = lw[i], pw[i]
        lab1 = ((word & _LOW7) + _LSB) ^ (word & _HIGH)
        half = lab1 >> _ONE
        bad |= (lab1 & _ABOVE1) | (lab1 & half & _LSB)  # a byte of 3 or more
        f = half & _LSB
        v = (lab1 | half) & _LSB
        valid += (v * _LSB) >> _TOP
        fg += (f * _LSB) >> _TOP
        pv += ((p & v) * _LSB) >> _TOP
        tp += ((p & f) * _LSB) >> _TOP
        npred += (p * _LSB) >> _TOP
    acc[0] += valid
    acc[1] += fg
    acc[2] += pv
    acc[3] += tp
    acc[4] += npred
    acc[5] |= bad != 0
    for i in range(n8, pred.size):  # the last n % 8 pixels
        p, la = pred[i] != 0, lab[i]
        v, f = la != 255, la == 1
        acc[0] += v
        acc[1] += f
        acc[2] += p & v
        acc[3] += p & f
        acc[4] += p
        acc[5] |= (la > 1) & v


@_jit
def bool_counts(pred, lab, out):
    """``out[:6]`` = the counts of a uint8 0/1 ``pred`` (see ``add_bool``)."""
    out[:] = 0
    add_bool(pred, lab, out)


@_jit
def above_counts(pred, lab, cut, high, out):
    """``out[:6]`` = the counts of ``pred > cut`` (``pred``: ``(n,)`` float32/float64
    values or uint16 patterns of a 16-bit float); ``out[6]``: some ``pred`` is not in
    ``[0, high]`` (NaN is not)."""
    out[:] = 0
    scratch = np.empty(_BLOCK, np.uint8)
    outside = False
    for start in range(0, pred.size, _BLOCK):
        block = pred[start:start + _BLOCK]
        for i in range(block.size):
            x = block[i]
            scratch[i] = x > cut
            outside |= not ((x >= 0) & (x <= high))  # (no branch: it vectorises)
        add_bool(scratch[:block.size], lab[start:start + block.size], out)
    out[6] = outside
