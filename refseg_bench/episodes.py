"""Typed episode data handed from the dataset layer to methods and the scorer.

Conventions for every array here:
- images: ``(H, W, 3)`` ``uint8`` RGB, original size, never resized by the harness;
- label masks: ``(H, W)`` ``uint8`` with 0 = background, 1 = the episode class,
  255 = ignore (void, object boundary, padding);
- annotation rasters: ``(H, W)`` ``bool`` at the support image's size;
- points: ``(N, 2)`` ``float32`` pixel coordinates ``(x, y)``; boxes: ``(M, 4)`` ``float32``
  ``XYXY`` in pixels, with ``x2``/``y2`` exclusive (one past the last foreground pixel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ANNOTATION_KINDS = ("mask", "box", "point", "scribble")
IGNORE_INDEX = 255


@dataclass(frozen=True)
class EpisodeSpec:
    """One manifest row: everything needed to rebuild an episode, nothing else.

    ``seed`` drives the reference-annotation simulation of this episode only.
    """

    index: int
    fold: int
    class_id: int
    query: str
    supports: tuple[str, ...]
    seed: int

    def to_row(self) -> dict:
        return {
            "index": self.index,
            "fold": self.fold,
            "class_id": self.class_id,
            "query": self.query,
            "supports": list(self.supports),
            "seed": self.seed,
        }

    @classmethod
    def from_row(cls, row: dict) -> EpisodeSpec:
        return cls(
            index=int(row["index"]),
            fold=int(row["fold"]),
            class_id=int(row["class_id"]),
            query=str(row["query"]),
            supports=tuple(str(s) for s in row["supports"]),
            seed=int(row["seed"]),
        )


@dataclass
class Annotation:
    """A simulated reference annotation of one support image.

    ``raster`` is the annotation drawn at support size (the filled box, the clicked
    pixels, the strokes, or the mask itself). ``points``/``point_labels`` and ``boxes``
    are the same annotation as geometry, for methods that prompt SAM directly.
    """

    kind: str
    raster: np.ndarray  # (H, W) bool
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def __post_init__(self) -> None:
        if self.kind not in ANNOTATION_KINDS:
            raise ValueError(
                f"annotation kind must be one of {ANNOTATION_KINDS}, got {self.kind!r}")


@dataclass
class Episode:
    """What a method may see of one episode: never the query label."""

    spec: EpisodeSpec
    class_name: str
    query_image: np.ndarray  # (H, W, 3) uint8
    support_images: list[np.ndarray]  # k x (Hs, Ws, 3) uint8
    annotations: list[Annotation]  # k, one per support
    # Full support labels, k x (Hs, Ws) uint8 0/1/255: present for ``mask`` annotations and
    # in training episodes; None under box, point and scribble references at evaluation
    # (the runner checks), where a method has only the annotation.
    support_masks: list[np.ndarray] | None

    @property
    def shot(self) -> int:
        return len(self.support_images)

    @property
    def query_size(self) -> tuple[int, int]:
        return self.query_image.shape[0], self.query_image.shape[1]


@dataclass
class EpisodeBatch:
    """A batch of episodes with a shared shot and annotation kind.

    Episodes keep their own sizes; adapters resize as their official code does.
    """

    episodes: list[Episode]
    annotation: str

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self):
        return iter(self.episodes)
