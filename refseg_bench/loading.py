"""Turning manifest rows into ``Episode`` objects (and the query label kept apart).

The query label never enters the ``Episode``: ``load_episode`` returns it separately, for
the scorer only. Support labels enter it only when asked for: at evaluation that is under
``mask`` annotations alone (the mask *is* the annotation); training loaders ask always.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from refseg_bench.datasets.base import DatasetError, FoldedDataset
from refseg_bench.episodes import Episode, EpisodeSpec
from refseg_bench.imageio import check_same_size


@dataclass
class LoadedEpisode:
    """An episode, its query label ``(H, W)`` uint8 0/1/255, or the reason it was skipped."""

    spec: EpisodeSpec
    episode: Episode | None
    label: np.ndarray | None
    skip_reason: str | None = None


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
                 annotation_style: str = "harness", *, support_labels: bool | None = None):
        self.dataset, self.specs, self.annotation = dataset, specs, annotation
        self.annotation_style, self.support_labels = annotation_style, support_labels

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> LoadedEpisode:
        return load_episode(self.dataset, self.specs[i], self.annotation,
                            self.annotation_style, support_labels=self.support_labels)


def collate(items: list[LoadedEpisode]) -> list[LoadedEpisode]:
    return items


__all__ = ["LoadedEpisode", "load_episode", "EpisodeDataset", "collate", "DatasetError"]
