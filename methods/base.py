"""The interface every method adapter implements.

The runner only ever calls ``from_config``, ``setup``, ``predict`` and ``describe``;
trained methods add ``fit``. Adapters are resolved by name from the method registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from refseg_bench.datasets.base import FoldedDataset
    from refseg_bench.episodes import EpisodeBatch

WEIGHT_KINDS = ("none", "official", "unverified", "trained", "random")


class Method(ABC):
    """A reference-segmentation method.

    ``weights`` says where the numbers come from: ``none`` (weight-free), ``official``
    (an official checkpoint whose published sha256 matched), ``unverified`` (a loaded file
    with no published hash to check; its sha256 is recorded), ``trained`` (trained with
    this harness), ``random`` (tiny or random weights, for tests; such rows are kept apart
    in leaderboards).
    """

    name: ClassVar[str]

    def __init__(self, **options) -> None:
        self.options = options
        self.device = None

    @classmethod
    def from_config(cls, options: dict) -> Method:
        """Build from the ``method_args`` section of the resolved run config."""
        return cls(**options)

    def setup(self, device: torch.device, dataset: FoldedDataset) -> None:
        """Load weights and move to ``device``. ``dataset`` is given for provenance and for
        trained methods that must find their checkpoint; it must not be used to read
        query labels (only ``oracle`` does, by definition)."""
        self.device = device

    def fit(self, dataset: FoldedDataset, fold: int, *, annotation: str,
            device: torch.device, progress: bool = True) -> dict:
        """Train on the base classes of ``fold`` (``dataset.classes(fold, "train")``, the
        ``train`` split only: a novel class must never be foreground in training) for
        reference annotations of kind ``annotation``, and write the checkpoint where
        ``setup``/``predict`` will find it. Resumes an interrupted training run.

        Returns a JSON-ready summary: at least ``checkpoint`` (path) and ``sha256``.
        Methods without a training step keep this default, which raises.
        """
        raise NotImplementedError(
            f"method {self.name!r} has no training step: it is weight-free or uses released "
            "weights, so there is nothing to train. `refseg-bench train` applies only to "
            "methods that define fit().")

    @abstractmethod
    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        """One ``(H, W)`` float tensor per episode: the foreground probability in [0, 1]
        (or a 0/1 mask) at the query image's original size, on any device."""

    def describe(self) -> dict:
        """Provenance for the run record: at least ``model`` and ``weights``; add
        ``checkpoint`` and ``checkpoint_sha256`` when weights are loaded from a file."""
        return {"model": self.name, "weights": "none"}
