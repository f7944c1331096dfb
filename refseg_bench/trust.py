"""Weight trust: what a number rests on, decided by one rule for every method and the
leaderboard.

Kinds, most trusted first:

- ``official``: loaded from a file whose sha256 equals a published one (the checkpoint
  catalogue's ``sha256``); nothing else is ever called official.
- ``trained``: trained by this harness (recipe and provenance in the checkpoint's
  ``train.json``) on top of foundations that are themselves official or trained.
- ``unverified``: loaded from a file with no published hash to compare with (its sha256 is
  recorded), e.g. a checkpoint given by path or a file the catalogue has no hash for.
- ``random``: random or tiny weights (pipeline checks and tests).
- ``none``: the method has no weights (weight-free baselines); it is neutral in a
  combination.

A method made of several weighted parts reports :func:`combine` of their kinds: the least
trusted part decides. Leaderboards put ``random`` rows in their own table and
``unverified`` rows in another (:func:`section`), so a row on the main table never rests
on an unchecked or random file.
"""

from __future__ import annotations

KINDS = ("official", "trained", "unverified", "random", "none")
_RANK = {"official": 3, "trained": 2, "unverified": 1, "random": 0}
SECTIONS = ("results", "unverified", "random")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"weights kind must be one of {KINDS}; got {kind!r}")
    return kind


def combine(*kinds: str) -> str:
    """The kind of a method built from parts of ``kinds``: the least trusted one
    (``none`` parts are ignored; no weighted part at all gives ``none``)."""
    weighted = [check_kind(k) for k in kinds if check_kind(k) != "none"]
    return min(weighted, key=_RANK.__getitem__) if weighted else "none"


def file_kind(sha256: str) -> tuple[str, str | None]:
    """(kind, catalogue name) of a weights file by its hash alone: ``official`` when it
    equals a published sha256 of the checkpoint catalogue, else ``unverified``."""
    from refseg_bench.models.checkpoints import catalogue

    for entry in catalogue().values():
        if entry.sha256 is not None and entry.sha256 == sha256.lower():
            return "official", entry.name
    return "unverified", None


def section(kind: str) -> str:
    """Which leaderboard table a row of weights ``kind`` belongs to."""
    check_kind(kind)
    if kind == "random":
        return "random"
    return "unverified" if kind == "unverified" else "results"
