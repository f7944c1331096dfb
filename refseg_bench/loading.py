"""Turning manifest rows into ``Episode`` objects (and the query label kept apart).

The query label never enters the ``Episode``: ``load_episode`` returns it separately, for
the scorer only. Support labels enter it only when asked for: at evaluation that is under
``mask`` annotations alone (the mask *is* the annotation); training loaders ask always.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, replace

import numpy as np
import torch

from refseg_bench.datasets.base import DatasetError, FoldedDataset
from refseg_bench.episodes import Episode, EpisodeSpec
from refseg_bench.imageio import check_same_size
from refseg_bench.shared_batches import Outgoing, unpack


@dataclass
class LoadedEpisode:
    """An episode, its query label ``(H, W)`` uint8 0/1/255, or the reason it was skipped."""

    spec: EpisodeSpec
    episode: Episode | None
    label: np.ndarray | None
    skip_reason: str | None = None

    def pin_memory(self) -> LoadedEpisode:
        """The same episode with its arrays in page-locked memory, still as NumPy arrays
        (views of pinned tensors), so copies to a GPU are direct DMA and may overlap
        compute. Called by the ``DataLoader`` pinning thread (``pin_memory=True``)."""
        if self.episode is None:
            return self
        ep = self.episode
        episode = replace(ep, query_image=_pinned(ep.query_image),
                          support_images=[_pinned(im) for im in ep.support_images],
                          support_masks=None if ep.support_masks is None else
                          [_pinned(m) for m in ep.support_masks])
        return replace(self, episode=episode, label=_pinned(self.label))


def _pinned(array: np.ndarray) -> np.ndarray:
    # The view keeps its pinned tensor alive (torch makes the tensor the array's base).
    return torch.from_numpy(np.ascontiguousarray(array)).pin_memory().numpy()


def load_episode(dataset: FoldedDataset, spec: EpisodeSpec, annotation: str,
                 annotation_style: str = "harness", *,
                 support_labels: bool | None = None) -> LoadedEpisode:
    """Load images and labels and simulate the reference annotations of one episode, in
    the protocol's ``annotation_style`` (refseg_bench/annotations.py).

    ``support_labels``: keep the full support labels in ``Episode.support_masks``; None
    (evaluation) keeps them only for ``mask`` annotations, so a method run with a box,
    point or scribble reference cannot read the label it is not given.

    An empty support mask (no foreground after ignoring 255) cannot be annotated; the
    episode is returned with ``skip_reason`` set so the runner records and counts it.
    Missing or corrupt files raise ``DatasetError``: that is a broken dataset, not an
    episode to skip.
    """
    from refseg_bench.annotations import EmptyReferenceError, simulate_annotation

    rng = np.random.default_rng(spec.seed)
    query = dataset.load_image(spec.query)
    label = dataset.load_mask(spec.query, spec.class_id)
    check_same_size(query, label, f"{dataset.name} item {spec.query}")
    images, masks, annotations = [], [], []
    for item in spec.supports:
        img = dataset.load_image(item)
        mask = dataset.load_mask(item, spec.class_id)
        check_same_size(img, mask, f"{dataset.name} item {item}")
        try:
            annotations.append(simulate_annotation(mask, annotation, rng, annotation_style))
        except EmptyReferenceError as err:
            return LoadedEpisode(spec, None, None, f"support {item}: {err}")
        images.append(img)
        masks.append(mask)
    if support_labels is None:
        support_labels = annotation == "mask"
    episode = Episode(spec, dataset.class_name(spec.class_id), query, images, annotations,
                      masks if support_labels else None)
    return LoadedEpisode(spec, episode, label)


class EpisodeDataset(torch.utils.data.Dataset):
    """Map-style view of a manifest for ``torch.utils.data.DataLoader`` workers.

    Episodes are fully determined by their manifest row, so the worker count cannot change
    them (each episode seeds its own generator from ``spec.seed``).
    """

    def __init__(self, dataset: FoldedDataset, specs: list[EpisodeSpec], annotation: str,
                 annotation_style: str = "harness", *, support_labels: bool | None = None,
                 carry_errors: bool = False):
        self.dataset, self.specs, self.annotation = dataset, specs, annotation
        self.annotation_style, self.support_labels = annotation_style, support_labels
        self.carry_errors = carry_errors

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> LoadedEpisode | LoadFailure:
        try:
            return load_episode(self.dataset, self.specs[i], self.annotation,
                                self.annotation_style, support_labels=self.support_labels)
        except DatasetError as err:
            if not self.carry_errors:
                raise
            return LoadFailure(err)


@dataclass
class LoadFailure:
    """A dataset error met in a loader worker, carried to the main process as a value and
    raised there unchanged (a worker's exception would reach it wrapped in the worker's
    traceback text, which the CLI would then print as the message)."""

    error: DatasetError


class EpisodeBatches:
    """Iterable over an ``episode_loader``'s batches that raises a carried
    ``DatasetError`` as itself. ``iter()`` starts the workers at once."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self._raising(iter(self.loader))

    @staticmethod
    def _raising(batches):
        for packed in batches:
            batch = unpack(packed)
            for item in batch:
                if isinstance(item, LoadFailure):
                    raise item.error
            yield batch


def collate(items: list[LoadedEpisode]) -> list[LoadedEpisode]:
    return items


AUTO_WORKERS_MAX = 4  # beyond this, decoding rarely limits a run and workers cost memory
PREFETCH_BATCHES = 2  # batches each worker keeps ready


def resolve_workers(value: int | str) -> int:
    """Loader processes for ``num_workers``: an int >= 0 as given, or ``auto``: half the
    CPUs this process may use (the other half predicts and scores), at least 1 and at most
    ``AUTO_WORKERS_MAX``."""
    if value == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        return max(1, min(AUTO_WORKERS_MAX, cpus // 2))
    return int(value)


def episode_loader(dataset: FoldedDataset, specs: list[EpisodeSpec], annotation: str,
                   annotation_style: str = "harness", *, batch_size: int, num_workers: int,
                   pin_memory: bool = False, support_labels: bool | None = None
                   ) -> EpisodeBatches:
    """Batches of ``LoadedEpisode`` in ``specs`` order, decoded ahead of use.

    With ``num_workers > 0`` worker processes load the next batches (``PREFETCH_BATCHES``
    each) while the caller predicts; batches still arrive in order and every episode is
    fixed by its manifest row, so the worker count never changes an episode. Workers are
    forked where the platform allows (no re-import of torch per worker) and hand their
    batches over in shared memory (:mod:`refseg_bench.shared_batches`); ``pin_memory``
    puts the arrays in page-locked memory for fast copies to a GPU. A ``DatasetError``
    (missing or corrupt file) is raised unchanged when its batch is reached.
    """
    workers = min(num_workers, math.ceil(len(specs) / batch_size))
    extra = {}
    if workers:
        extra["prefetch_factor"] = PREFETCH_BATCHES
        if sys.platform.startswith("linux"):
            extra["multiprocessing_context"] = "fork"
    return EpisodeBatches(torch.utils.data.DataLoader(
        EpisodeDataset(dataset, specs, annotation, annotation_style,
                       support_labels=support_labels, carry_errors=True),
        batch_size=batch_size, num_workers=workers, collate_fn=Outgoing if workers else collate,
        pin_memory=pin_memory and torch.cuda.is_available(), **extra))


__all__ = ["LoadedEpisode", "load_episode", "EpisodeDataset", "collate", "DatasetError",
           "episode_loader", "resolve_workers"]
