"""The one real-or-random rule of every method built on foundation models.

A method's options hold ``size`` (``auto`` | ``real`` | ``tiny``) and ``presets`` with a
``real`` and a ``tiny`` entry (each with sections such as ``model`` and ``train``), plus
per-section overrides applied key by key on top of the chosen preset. ``real`` names the
official checkpoints; ``tiny`` is a small random configuration for CPU runs and tests.
``auto`` takes ``real`` when every checkpoint file it names is present, else ``tiny``
with a loud notice naming the missing files and how to fetch them. Rows on ``tiny``
weights are recorded as ``random`` and kept apart in leaderboards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from refseg_bench.errors import ConfigError
from refseg_bench.notices import say
from refseg_bench.options import parse_options

SIZES = ("auto", "real", "tiny")
T = TypeVar("T")


@dataclass(frozen=True)
class SizeChoice:
    """The preset taken (``real`` or ``tiny``) and why (recorded with the run)."""

    name: str
    reason: str


def missing_checkpoints(refs: list[str | None]) -> list[str]:
    """Paths of the checkpoints ``refs`` (catalogue names or paths; None = random, needs
    nothing) that are not on disk; for a folder entry, each of its absent files."""
    from refseg_bench.models.folders import missing_in

    return [path for ref in refs if ref is not None for path in missing_in(ref)]


def choose_size(size: str, method: str, real_checkpoints: list[str | None]) -> SizeChoice:
    """Resolve ``size`` by the module rule; ``real_checkpoints`` are the ``real`` preset's
    checkpoint references."""
    if size not in SIZES:
        raise ConfigError(f"{method} method_args.size must be one of {', '.join(SIZES)}; "
                          f"got {size!r}")
    if size != "auto":
        return SizeChoice(size, f"size={size} configured")
    missing = missing_checkpoints(real_checkpoints)
    if not missing:
        return SizeChoice("real", "official checkpoints found")
    names = [r for r in real_checkpoints if r is not None and "/" not in r]
    say(method, f"official checkpoints missing ({', '.join(missing)}): running the [bold]tiny "
                f"RANDOM[/bold] preset instead (a pipeline check, recorded as weights=random). "
                f"Fetch them with `refseg-bench checkpoints fetch NAME` ({', '.join(names)}).")
    return SizeChoice("tiny", "official checkpoints missing (" + ", ".join(missing)
                      + "): tiny random weights")


def preset_section(presets: dict, name: str, section: str, cls: type[T], overrides: dict,
                   method: str) -> T:
    """Section ``section`` of preset ``name`` as dataclass ``cls``, with ``overrides``
    applied key by key, every key and type checked."""
    if name not in presets:
        raise ConfigError(f"{method} has no preset {name!r}; configured: {sorted(presets)}")
    body = dict(presets[name] or {})
    return parse_options(cls, {**(body.get(section) or {}), **(overrides or {})},
                         f"{method} presets.{name}.{section}")
