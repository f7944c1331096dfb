"""Reference cache: work that depends only on an episode's references, done once per run.

PerSAM-F fits its mask weights on the references, VRP-SAM runs its backbone on each
support, FSS-SAM2 builds a support memory, CAV-SAM tunes a LoRA or inverts each reference:
none of it looks at the query, so an episode whose references were seen before can reuse
the result (the official PerSAM-F script fits once per object and tests all its targets).

An entry is keyed by content, never by file name or episode: a ``kind`` (what is cached,
e.g. ``"persam_f/reference"``), the sha256 of every reference image, of every annotation
(kind, raster, points, point labels, boxes) and, when the method reads them, of the full
support masks, plus a ``state`` string naming everything else the value depends on
(model weights fingerprint, options, device): same inputs, same value. Values are
tensors, NumPy arrays, plain numbers or nested tuples / lists / dicts of them, held in an
in-memory LRU bounded in bytes (``max_bytes=0`` turns the cache off: every call computes).

Exactness: a hit returns the value an earlier call computed. A method that computes one
reference at a time (PerSAM-F's fit) gets the same numbers with and without the cache; one
that batches the references it misses (VRP-SAM's backbone) gets values whose last bits
depend on the batch they were computed in (``conv2d`` on the CPU picks its algorithm by
batch size), exactly as with the embedding cache: probabilities may move by ~1e-7, and
masks, hence scores, stayed identical in every comparison we ran.

Usage::

    cache = ReferenceCache(max_bytes=256 << 20)
    key = cache.key("mymethod/reference", state, episode.support_images, episode.annotations)
    value = cache.get_or_compute(key, lambda: expensive(episode))
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from refseg_bench.models.cache import detached, image_sha256, nbytes


def annotation_sha256(annotation) -> str:
    """Content hash of a reference annotation (``refseg_bench.episodes.Annotation``)."""
    digest = hashlib.sha256(annotation.kind.encode())
    for part in (annotation.raster, annotation.points, annotation.point_labels,
                 annotation.boxes):
        digest.update(image_sha256(np.asarray(part)).encode())
    return digest.hexdigest()


def module_sha256(module) -> str:
    """Content hash of a module's parameters and buffers as they are now (names, shapes,
    dtypes and bytes): for weights that change, where ``weights_fingerprint`` memoises."""
    digest = hashlib.sha256()
    for name, t in module.state_dict().items():
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def reference_key(kind: str, state: str, images: Sequence[np.ndarray], annotations: Sequence,
                  masks: Sequence[np.ndarray] | None = None) -> str:
    """Hex digest naming the references (in order) under ``kind`` and ``state``."""
    if len(images) != len(annotations) or (masks is not None and len(masks) != len(images)):
        raise ValueError(f"one annotation (and mask) per reference image: got {len(images)} "
                         f"images, {len(annotations)} annotations, "
                         f"{None if masks is None else len(masks)} masks")
    parts = [kind, state, str(len(images))]
    for i, (image, annotation) in enumerate(zip(images, annotations, strict=True)):
        parts += [image_sha256(image), annotation_sha256(annotation)]
        parts.append(image_sha256(masks[i]) if masks is not None else "-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


@dataclass
class ReferenceCacheStats:
    """``hits`` and ``misses`` of ``get_or_compute``; ``computed`` = calls of the compute
    function (a miss with the cache off computes too); ``evictions`` by the byte bound."""

    hits: int = 0
    misses: int = 0
    computed: int = 0
    evictions: int = 0


class ReferenceCache:
    """LRU of reference-only results, bounded by ``max_bytes`` of tensor/array storage.
    Entries stay on the device they were computed on."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.bytes_used = 0
        self.stats = ReferenceCacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @staticmethod
    def key(kind: str, state: str, images: Sequence[np.ndarray], annotations: Sequence,
            masks: Sequence[np.ndarray] | None = None) -> str:
        """See :func:`reference_key`."""
        return reference_key(kind, state, images, annotations, masks)

    def lookup(self, key: str) -> Any | None:
        """The entry for ``key`` or None (counted as a hit or a miss), for callers that
        compute their misses together (see ``put``)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return self._entries[key][0]
        self.stats.misses += 1
        return None

    def put(self, key: str, value: Any) -> Any:
        """Store a value computed for a missed ``key``; returns the stored copy (or
        ``value`` itself with the cache off)."""
        self.stats.computed += 1
        if self.max_bytes == 0:
            return value
        value = detached(value)
        size = nbytes(value)
        if size <= self.max_bytes:
            if key in self._entries:
                self.bytes_used -= self._entries.pop(key)[1]
            self._entries[key] = (value, size)
            self.bytes_used += size
            while self.bytes_used > self.max_bytes:
                _, (_, freed) = self._entries.popitem(last=False)
                self.bytes_used -= freed
                self.stats.evictions += 1
        return value

    def fill(self, keys: Sequence[str], compute: Callable[[list[int]], dict]) -> list[dict]:
        """One entry per key, for a batch: keys not in the cache are computed together,
        each distinct key once, by ``compute(positions)`` (``positions``: indices into
        ``keys`` of their first occurrences) -> a dict of tensors batched along dim 0 in
        that order; each entry is its row (kept batched: ``t[j:j + 1]``)."""
        found = {key: value for key in dict.fromkeys(keys)
                 if (value := self.lookup(key)) is not None}
        todo: dict[str, int] = {}  # key -> position of its first occurrence
        for j, key in enumerate(keys):
            if key not in found and key not in todo:
                todo[key] = j
        if todo:
            fresh = compute(list(todo.values()))
            for j, key in enumerate(todo):
                found[key] = self.put(key, {name: t[j:j + 1] for name, t in fresh.items()})
        return [found[key] for key in keys]

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """The entry for ``key``, or ``compute()`` stored under it. Treat the result as
        read-only: later hits return the same objects."""
        value = self.lookup(key)
        return self.put(key, compute()) if value is None else value

    def clear(self) -> None:
        self._entries.clear()
        self.bytes_used = 0
