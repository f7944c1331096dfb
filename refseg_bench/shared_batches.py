"""Loader batches that cross from a worker process to the main process in shared memory.

A batch a ``DataLoader`` worker returns is pickled into a pipe and read back by the main
process, which then holds the whole batch while its arrays are copied through the kernel
64 KiB at a time, each chunk waiting for the worker to be scheduled: about 0.8 ms of the
main process per 0.5 MB episode, almost half of what decoding the episode costs it
(``benchmarks/perf_core.py``). Here the worker pickles the batch with its arrays out of
band (pickle protocol 5), copies their bytes into one shared-memory buffer and sends only
that buffer's handle and the small in-band rest; the main process unpickles
the arrays as views of the buffer, without a copy. Arrays keep the buffer alive; it is freed
when the batch's last array is. The packing itself happens when the worker's result queue
pickles the batch, in the queue's feeder thread: the copy into a fresh segment (about 0.5 ms
an episode, mostly page faults) then overlaps the worker's decoding of its next batch
instead of delaying it.

The bytes are the same, so no number changes. When the shared-memory filesystem has no room
for a batch (a container's small ``/dev/shm``) or the process may not write a file that
large (``RLIMIT_FSIZE``), the batch travels the ordinary way instead, so a run slows down
rather than crashing its workers. Both are checked first because a segment torch fails to
size is left behind, empty, in ``/dev/shm``; after any failure to create one, a worker
stops trying.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

SHM_DIR = "/dev/shm"  # where torch's file-descriptor sharing creates its segments (Linux)
SHM_HEADROOM = 4  # need this many times a batch's bytes free, for the batches in flight
_failed = False  # set in a worker whose segment could not be created: it stops trying


@dataclass
class PackedBatch:
    """A pickled batch (``payload``) whose out-of-band buffers lie back to back in
    ``buffer`` (uint8, shared memory) with byte lengths ``sizes``."""

    payload: bytes
    buffer: torch.Tensor
    sizes: list[int]

    def pin_memory(self) -> PackedBatch:
        """The same batch with its buffer in page-locked memory (one copy for the whole
        batch). Called by the ``DataLoader`` pinning thread (``pin_memory=True``)."""
        return PackedBatch(self.payload, self.buffer.pin_memory(), self.sizes)

    def unpack(self):
        """The batch, its arrays views of ``buffer`` (writable, as unpickled ones are)."""
        flat = self.buffer.numpy()  # the array's base is the tensor: views keep it alive
        offsets = np.cumsum([0, *self.sizes])
        views = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        return pickle.loads(self.payload, buffers=views)


def pack(items):
    """Worker side (through :class:`Outgoing`): ``items`` as a :class:`PackedBatch`, or
    unchanged when they hold no array data or shared memory has no room for them."""
    global _failed
    if _failed:
        return items
    out_of_band: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(items, protocol=5, buffer_callback=out_of_band.append)
    raws = [b.raw() for b in out_of_band]
    total = sum(r.nbytes for r in raws)
    if not total or not shm_room(total * SHM_HEADROOM) or not file_size_allowed(total):
        return items
    try:  # allocated in shared memory at once, as torch's own default_collate does
        buffer = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(total))
    except RuntimeError:  # the segment could not be created: send the batch as it is
        _failed = True
        return items
    flat, offset = buffer.numpy(), 0
    for raw in raws:
        flat[offset:offset + raw.nbytes] = np.frombuffer(raw, np.uint8)
        offset += raw.nbytes
    return PackedBatch(payload, buffer, [r.nbytes for r in raws])


class Outgoing:
    """What a worker's ``collate`` returns: the batch, packed only when pickled (by the
    result queue's feeder thread), then unpickled in the main process as a
    :class:`PackedBatch`, or as the batch itself when :func:`pack` leaves it so."""

    def __init__(self, items) -> None:
        self.items = items

    def __reduce__(self):
        try:
            packed = pack(self.items)
        except Exception:  # noqa: BLE001 - whatever failed, the ordinary way still works
            packed = self.items
        return _as_is, (packed,)  # unpickles as what it holds, a PackedBatch or the batch


def _as_is(items):
    return items


def shm_room(nbytes: int) -> bool:
    """Whether the shared-memory filesystem has ``nbytes`` free (True where there is no
    such directory to ask: torch then shares by other means)."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return True
    return st.f_bavail * st.f_frsize >= nbytes


def file_size_allowed(nbytes: int) -> bool:
    """Whether this process may make a file of ``nbytes`` (its ``RLIMIT_FSIZE``, which
    covers shared-memory segments too)."""
    try:
        import resource
    except ImportError:  # not a Unix: no such limit
        return True
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return soft == resource.RLIM_INFINITY or nbytes <= soft


def unpack(batch):
    """Main side: a batch as its worker built it, whichever way it travelled."""
    return batch.unpack() if isinstance(batch, PackedBatch) else batch
