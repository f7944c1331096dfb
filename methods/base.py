"""The interface every method adapter implements.

The runner calls, in order: ``from_config`` (typed options), ``setup(device, dataset)``,
then for every unit (one seed x fold) ``begin_unit(unit)`` followed by ``predict`` on that
unit's batches, and ``describe`` for the record. Trained methods add ``fit``.

Two contracts the runner enforces:

- Under a ``box``, ``point`` or ``scribble`` reference annotation the episodes reaching
  ``predict`` carry no support labels (``Episode.support_masks is None``): a method sees
  the annotation's raster and geometry only. Only ``mask`` episodes carry the full label.
- ``predict`` runs under ``torch.inference_mode()`` unless the class declares
  ``test_time_grad = True`` (test-time fitting or tuning); then it runs under
  ``torch.no_grad()`` and the method turns gradients on where it fits
  (``with torch.enable_grad(): ...``). Tensors made under inference mode can never join an
  autograd graph, which is why the choice is the runner's and declared, not escaped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from refseg_bench.options import options_dict, parse_options
from refseg_bench.trust import KINDS as WEIGHT_KINDS  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import torch

    from refseg_bench.datasets.base import FoldedDataset
    from refseg_bench.episodes import EpisodeBatch


@dataclass(frozen=True)
class NoOptions:
    """Options of a method that takes none: any key is refused."""


@dataclass(frozen=True)
class Unit:
    """What the runner evaluates next: every episode of one (seed, fold) of ``dataset``'s
    ``split``, with ``shot`` references annotated as ``annotation``."""

    dataset: FoldedDataset
    fold: int
    split: str
    shot: int
    annotation: str
    seed: int


class Method(ABC):
    """A reference-segmentation method.

    ``Options`` is a dataclass of the method's options; ``method_args`` is parsed into it
    (:func:`refseg_bench.options.parse_options`), so an unknown or mistyped option is a
    config error naming the valid keys. ``describe()["weights"]`` says what the numbers
    rest on (:mod:`refseg_bench.trust`).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    test_time_grad: ClassVar[bool] = False

    def __init__(self, **options) -> None:
        self.opts = parse_options(self.Options, options, f"method_args of {self.name!r}")
        self.options = options_dict(self.opts)
        self.device = None
        self.unit: Unit | None = None

    @classmethod
    def from_config(cls, options: dict) -> Method:
        """Build from the ``method_args`` section of the resolved run config."""
        return cls(**options)

    def setup(self, device: torch.device, dataset: FoldedDataset) -> None:
        """Load weights and move to ``device``. ``dataset`` is given for provenance and for
        trained methods that must find their checkpoint; it must not be used to read
        query labels (only ``oracle`` does, by definition)."""
        self.device = device

    def begin_unit(self, unit: Unit) -> None:
        """Called before the first ``predict`` of every unit (also when none of its episodes
        is left to run): per-fold weights are chosen here, never from episode fields."""
        self.unit = unit

    def fit(self, dataset: FoldedDataset, fold: int, *, annotation: str,
            device: torch.device, progress: bool = True) -> dict:
        """Train on the base classes of ``fold`` (``dataset.classes(fold, "train")``, the
        ``train`` split only, images with a novel class dropped: see
        :func:`refseg_bench.trained.data.base_only`) for reference annotations of kind
        ``annotation``, and write the checkpoint where ``begin_unit`` will find it.
        Resumes an interrupted training run.

        Returns a JSON-ready summary: at least ``checkpoint`` (path) and ``sha256``.
        Methods without a training step keep this default, which raises.
        """
        raise NotImplementedError(
            f"method {self.name!r} has no training step: it is weight-free or uses released "
            "weights, so there is nothing to train. `refseg-bench train` applies only to "
            "methods that define fit().")

    @abstractmethod
    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        """One ``(H, W)`` tensor per episode at the query image's original size, on any
        device: the foreground probability in [0, 1] (float32, or float16 / bfloat16 when
        the method computes in it: the scorer thresholds in the given dtype, so do not
        cast), or a bool mask when the method's output is binary (the cheapest to score;
        never a float 0/1 map)."""

    def describe(self) -> dict:
        """Provenance for the run record: at least ``model`` and ``weights`` (a kind of
        :mod:`refseg_bench.trust`); add ``checkpoint`` and ``checkpoint_sha256`` when
        weights are loaded from a file. The parsed options are added by the runner."""
        return {"model": self.name, "weights": "none"}


def half_as_foreground(p: torch.Tensor) -> torch.Tensor:
    """``p`` (probabilities, any shape) with every value of exactly 0.5 raised to the next
    representable value, for methods whose official code counts ``sigmoid(logit) >= 0.5``
    as foreground (FSSAM's ``test.py``): the scorer counts ``p > 0.5``, and in
    float32 the sigmoid of any logit within about 1e-7 of 0 (either sign) is exactly 0.5,
    so without this those pixels would be background here and foreground there."""
    import torch

    half = p.new_tensor(0.5)
    return torch.where(p == half, torch.nextafter(half, p.new_tensor(1.0)), p)
