"""Where a model's weights came from, in the form run records store it.

Every builder in ``refseg_bench.models`` attaches one :class:`WeightsInfo` to the module it
returns; :func:`weights_info` reads it back. Run records copy ``to_record()`` verbatim, so a
leaderboard can tell official weights from random or unverified ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch

# official:   loaded from a catalogue checkpoint whose published sha256 matched the file.
# unverified: loaded from a file that could not be checked (no published sha256, or a file
#             that is not in the catalogue, e.g. self-trained weights); its hash is recorded.
# random:     no checkpoint at all (tests, tiny configurations, speed measurements).
WeightsKind = Literal["official", "unverified", "random"]

_ATTR = "refseg_weights_info"


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of one model's weights.

    ``model`` names the architecture (e.g. ``"sam/vit_h"``, ``"sam2.1/hiera_t@512"``);
    ``checkpoint`` is the file path loaded (None for random weights); ``sha256`` its
    computed hex digest; ``catalogue_name`` the entry of ``configs/checkpoints.yaml`` it
    matched by file name, if any; ``note`` says why weights are ``unverified``.
    """

    model: str
    weights: WeightsKind
    checkpoint: str | None = None
    sha256: str | None = None
    catalogue_name: str | None = None
    note: str = ""

    def to_record(self) -> dict:
        """A JSON-ready dict for run records."""
        return asdict(self)

    @classmethod
    def random(cls, model: str) -> WeightsInfo:
        return cls(model=model, weights="random")


def attach_weights_info(module: torch.nn.Module, info: WeightsInfo) -> None:
    """Store ``info`` on ``module`` (a plain attribute: not a parameter, not in state_dict)."""
    object.__setattr__(module, _ATTR, info)


def weights_info(module: torch.nn.Module) -> WeightsInfo:
    """The provenance attached by a ``refseg_bench.models`` builder.

    Raises ValueError for a module that was not built by one, since a run record without
    provenance would silently mix random and official weights.
    """
    info = getattr(module, _ATTR, None)
    if info is None:
        raise ValueError(
            f"{type(module).__name__} carries no weights provenance: build it with a "
            "refseg_bench.models builder (build_sam, build_sam2, build_resnet50_v2, ...)."
        )
    return info
