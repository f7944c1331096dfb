"""Exact replays of the official evaluation loaders: the very episodes of a paper's table.

The harness sampler (``sampler.py``) reproduces each family's *rules* with its own
generator. A preset with a ``replay`` spec can instead, with ``exact: true`` (or
``protocol_args.exact=true``), replay the official test loader draw for draw: the same
global-RNG calls in the same order, from the same seed, on the same lists. Each module
here replays one family and cites the code it follows:

- ``hsnet``: hsnet, Matcher and PATNet test loaders (legacy NumPy ``RandomState``);
- ``pfenet``: PFENet, BAM and FSSAM (torch DataLoader workers reseeding Python ``random``);
- ``vrpsam``: VRP-SAM's validation inside ``train.py`` (4 ranks, identical seeds).

A replay returns the episodes and what the manifest header records about them under
``replay``: the code followed, the random streams, and ``lists``, which says whether the
dataset's lists are the official ones (``official``), could not be checked
(``unverified``), or are not (``differ``: the official draw sequence on other lists).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from refseg_bench.sampler import SamplingError

MODULES = {
    "hsnet": "refseg_bench.replay.hsnet",
    "pfenet": "refseg_bench.replay.pfenet",
    "vrpsam": "refseg_bench.replay.vrpsam",
}
LISTS_STATES = ("official", "unverified", "differ")
RULE_EQUIVALENT = "rule-equivalent"


class ReplayError(SamplingError):
    """An exact replay is impossible here (no official loader, lists absent from the
    official repositories, or a case where the official loader never returns)."""


@dataclass(frozen=True)
class Replay:
    """Replayed episodes as ``(class_id, query, supports)`` in episode order, and the
    facts recorded with them (``lists`` is one of ``LISTS_STATES``)."""

    episodes: list[tuple[int, str, tuple[str, ...]]]
    lists: str
    info: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def header(self, spec: dict) -> dict:
        """What the manifest header records under ``replay``."""
        notes = [spec["note"]] if spec.get("note") else []
        notes += list(self.notes)
        return {"code": spec["code"], "lists": self.lists, **self.info,
                **({"notes": notes} if notes else {})}


def module_of(spec: dict):
    """The replay module named by a preset's ``replay.code``."""
    code = (spec or {}).get("code")
    if code not in MODULES:
        raise ReplayError(f"this protocol has no replay of official episodes (replay code "
                          f"{code!r}; known: {', '.join(MODULES)}). Drop exact=true to draw "
                          "episodes by the protocol's rules.")
    return importlib.import_module(MODULES[code])


def replay_episodes(dataset, fold: int, split: str, shot: int, n: int, seed: int,
                    spec: dict) -> Replay:
    """The first ``n`` episodes the official loader named by ``spec`` draws from ``seed``
    on ``dataset``'s ``(fold, split)``; raises ``ReplayError`` where that is impossible."""
    module = module_of(spec)
    if split == "train":
        raise ReplayError("exact replays are of the official test loaders; use split=val "
                          "or split=test")
    return module.replay(dataset, fold, split, shot, n, seed, spec)


def coverage(spec: dict) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """(datasets the replay covers -> what it follows, datasets it cannot -> why, caveats)."""
    if not spec:
        return {}, {}, ()
    module = module_of(spec)
    return dict(module.COVERED), dict(module.IMPOSSIBLE), tuple(module.CAVEATS)


def episode_kind(header: dict | None) -> str:
    """``exact``, ``exact, lists unverified``, ``exact, lists differ`` or
    ``rule-equivalent``, from a manifest header."""
    replay = (header or {}).get("replay")
    if not replay:
        return RULE_EQUIVALENT
    lists = replay.get("lists", "unverified")
    return "exact" if lists == "official" else f"exact, lists {lists}"


def combined_kind(kinds: list[str]) -> str:
    """One label for a run's units: theirs if they agree, else the weakest claim."""
    if not kinds:
        return RULE_EQUIVALENT
    order = ["exact", "exact, lists unverified", "exact, lists differ", RULE_EQUIVALENT]
    return max(kinds, key=lambda k: order.index(k) if k in order else len(order))
