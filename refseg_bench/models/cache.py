"""Embedding cache: an image used in many episodes is encoded once per run.

Entries are keyed by (image content sha256, model name, weights fingerprint, input size):
the same pixels through the same encoder with the same weights at the same size give the
same embedding, whatever the file name or episode. Values are tensors or nested
tuples / lists / dicts of tensors (e.g. SAM 2's image embedding plus high-resolution
features). The in-memory part is an LRU bounded in bytes; an optional directory keeps
entries across runs (``torch.save``, read back with ``weights_only=True``).

Only for frozen encoders: the weights fingerprint is computed once per module.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refseg_bench.models.provenance import weights_info

_FINGERPRINT_ATTR = "refseg_weights_fingerprint"


def image_sha256(image: np.ndarray) -> str:
    """Content hash of an image array (its bytes, shape and dtype)."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    digest.update(arr.data)
    return digest.hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """The checkpoint sha256 when the module was loaded from a file, else a hash of its
    current parameters and buffers (two random initialisations must not share entries).
    Memoised on the module: call it only for frozen modules."""
    cached = getattr(module, _FINGERPRINT_ATTR, None)
    if cached is not None:
        return cached
    try:
        sha = weights_info(module).sha256
    except ValueError:
        sha = None
    if sha is None:
        digest = hashlib.sha256()
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        sha = "params:" + digest.hexdigest()
    object.__setattr__(module, _FINGERPRINT_ATTR, sha)
    return sha


@dataclass(frozen=True)
class EncoderId:
    """The model side of a cache key: ``model`` (e.g. ``"sam/vit_h"``), ``weights`` (a
    checkpoint sha256 or parameter fingerprint) and ``input_size`` (encoder input pixels,
    an int for square inputs or (H, W))."""

    model: str
    weights: str
    input_size: int | tuple[int, int]

    @classmethod
    def of(cls, module: torch.nn.Module, input_size: int | tuple[int, int],
           model: str | None = None) -> EncoderId:
        """From a module built by ``refseg_bench.models``; ``model`` defaults to its
        provenance name (add a suffix when one module has several encoders, e.g. layers)."""
        return cls(model or weights_info(module).model, weights_fingerprint(module), input_size)

    def key(self, image_hash: str) -> str:
        """Hex digest naming the entry for one image (also its file name on disk)."""
        text = f"{image_hash}|{self.model}|{self.weights}|{self.input_size}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CacheStats:
    """Counters since construction (or :meth:`EmbeddingCache.reset_stats`).

    ``encoder_passes`` counts calls of the encoding function (one per batch);
    ``images_encoded`` the images those calls encoded; ``disk_hits`` is part of ``hits``.
    """

    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    encoder_passes: int = 0
    images_encoded: int = 0
    evictions: int = 0


def nbytes(value: Any) -> int:
    """Bytes held by the tensors and arrays in a (nested) value."""
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def detached(value: Any) -> Any:
    """Own-storage, grad-free copies of the tensors and arrays in a (nested) value: a slice
    of a batch output would otherwise keep the whole batch alive and be mis-counted."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached(v) for v in value)
    return value


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class EmbeddingCache:
    """LRU of encoder outputs, bounded by ``max_bytes`` of tensor storage, optionally backed
    by ``disk_dir``. Entries live on the device they were computed on; entries read from
    disk come back on the CPU."""

    def __init__(self, max_bytes: int = 2 << 30, disk_dir: str | Path | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.bytes_used = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def reset_stats(self) -> None:
        self.stats = CacheStats()

    def _disk_path(self, key: str) -> Path | None:
        return self.disk_dir / f"{key}.pt" if self.disk_dir is not None else None

    def get(self, key: str) -> Any | None:
        """The entry for ``key`` (memory first, then disk) or None; counts a hit or miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return self._entries[key][0]
        path = self._disk_path(key)
        if path is not None and path.exists():
            value = torch.load(path, map_location="cpu", weights_only=True)
            self._remember(key, value)
            self.stats.hits += 1
            self.stats.disk_hits += 1
            return value
        self.stats.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` in memory (evicting least recently used entries beyond
        ``max_bytes``) and on disk when a directory is set."""
        self._remember(key, value)
        path = self._disk_path(key)
        if path is not None and not path.exists():
            tmp = path.with_suffix(".tmp")
            torch.save(_to_cpu(value), tmp)
            tmp.replace(path)  # atomic: a killed run never leaves a truncated entry

    def _remember(self, key: str, value: Any) -> None:
        size = nbytes(value)
        if key in self._entries:
            self.bytes_used -= self._entries.pop(key)[1]
        if size > self.max_bytes:
            return  # larger than the whole cache: keep only on disk (if any)
        self._entries[key] = (value, size)
        self.bytes_used += size
        while self.bytes_used > self.max_bytes:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes_used -= freed
            self.stats.evictions += 1

    def get_or_compute(self, image: np.ndarray, encoder: EncoderId,
                       fn: Callable[[np.ndarray], Any]) -> Any:
        """The cached embedding of ``image`` under ``encoder``, computing ``fn(image)`` on a
        miss (one encoder pass)."""
        key = encoder.key(image_sha256(image))
        value = self.get(key)
        if value is None:
            value = detached(fn(image))
            self.stats.encoder_passes += 1
            self.stats.images_encoded += 1
            self.put(key, value)
        return value

    def encode_batch(self, images: Sequence[np.ndarray], encoder: EncoderId,
                     batch_fn: Callable[[list[np.ndarray]], Any]) -> list[Any]:
        """Embeddings of ``images`` in order, encoding all misses in one ``batch_fn`` call.

        ``batch_fn`` gets the distinct missing images and returns either a tensor whose
        first dimension indexes them or a sequence with one value per image.
        """
        keys = [encoder.key(image_sha256(im)) for im in images]
        found: dict[str, Any] = {}
        todo: dict[str, np.ndarray] = {}
        for key, image in zip(keys, images, strict=True):
            if key in found or key in todo:
                continue  # the same image twice in one batch is looked up once
            value = self.get(key)
            if value is None:
                todo[key] = image
            else:
                found[key] = value
        if todo:
            outputs = batch_fn(list(todo.values()))
            if len(outputs) != len(todo):
                raise ValueError(f"batch_fn returned {len(outputs)} outputs for "
                                 f"{len(todo)} images")
            self.stats.encoder_passes += 1
            self.stats.images_encoded += len(todo)
            for key, out in zip(todo, outputs, strict=True):
                found[key] = detached(out)
                self.put(key, found[key])
        return [found[k] for k in keys]
