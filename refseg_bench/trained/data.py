"""Training episodes: drawn from a fold's ``train`` split and base classes only, on the
dataset's base-only view (no training image shows a novel class), by the shared sampler.

Training episodes are the one place where full support labels reach a method
(``Episode.support_masks``), whatever annotation the method is trained for: official
training loops read the support mask, and the query label is the training target.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from refseg_bench.datasets.base import FoldedDataset
from refseg_bench.episodes import Episode, EpisodeSpec
from refseg_bench.loading import episode_loader
from refseg_bench.protocols import Protocol
from refseg_bench.sampler import sample_episodes

SAMPLERS = ("file_order", "class_uniform")


def train_protocol(sampler: str, seed: int) -> Protocol:
    """The sampling rule of training episodes: ``file_order`` (every training query once per
    epoch, class drawn among its base classes: the PASCAL loaders of PFENet/BAM/VRP-SAM) or
    ``class_uniform`` (class drawn uniformly, then a query of it: the COCO loaders of
    HSNet/VRP-SAM); supports distinct from each other and from the query."""
    if sampler not in SAMPLERS:
        raise ValueError(f"training sampler must be one of {SAMPLERS}; got {sampler!r}")
    return Protocol(name=f"train-{sampler}", description="training episodes", sampler=sampler,
                    episodes=0, seed=seed, distinct_supports=True, family="training")


def epoch_specs(dataset: FoldedDataset, fold: int, *, shot: int, n: int | None, seed: int,
                epoch: int, sampler: str = "file_order") -> list[EpisodeSpec]:
    """The episodes of one training epoch in training order, a pure function of the
    arguments. ``dataset`` must be the base-only view
    (:meth:`~refseg_bench.datasets.base.FoldedDataset.base_only_training`); ``n`` None:
    as many episodes as the fold has training queries."""
    n = n or len(dataset.query_items(fold, "train"))
    specs = list(sample_episodes(dataset, fold, "train", shot, n, seed * 1000 + epoch,
                                 train_protocol(sampler, seed)).episodes)
    order = np.random.default_rng([seed, epoch]).permutation(len(specs))
    return [specs[i] for i in order]


def iter_batches(dataset: FoldedDataset, specs: list[EpisodeSpec], annotation: str,
                 batch_size: int, num_workers: int = 0
                 ) -> Iterator[tuple[list[Episode], list[np.ndarray]]]:
    """Load training episodes in batches: (episodes with support labels, query labels), in
    ``specs`` order. ``num_workers`` loader processes decode in parallel; every episode is
    fixed by its spec, so the worker count never changes what is trained on. Episodes whose
    support cannot be annotated (no foreground) are dropped."""
    loader = episode_loader(dataset, list(specs), annotation, batch_size=batch_size,
                            num_workers=num_workers, support_labels=True)
    for batch in loader:
        kept = [le for le in batch if le.episode is not None]
        if kept:
            yield [le.episode for le in kept], [le.label for le in kept]
