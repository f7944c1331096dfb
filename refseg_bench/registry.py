"""A name -> lazily imported class registry, one instance for methods and one for datasets.

Entries map a name to a ``"module:attribute"`` string, so listing names never imports a
heavy backend. Configs name registry keys only, never import paths: a config cannot make
the harness import arbitrary code.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:Attribute"
    summary: str


class Registry:
    """Registry of one kind of component (``kind`` is used in messages: "method", "dataset")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, summary: str = "") -> None:
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is already registered as {self._entries[name].target}"
            )
        if ":" not in target:
            raise ValueError(f"target must be 'module:Attribute', got {target!r}")
        self._entries[name] = Entry(name, target, summary)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def get(self, name: str) -> Any:
        """Import and return the registered attribute (usually a class)."""
        module_name, attr = self.entry(name).target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


METHODS = Registry("method")
DATASETS = Registry("dataset")


def load_builtin_entries() -> None:
    """Import the packages whose ``__init__`` registers the built-in methods and datasets.

    Those ``__init__`` modules only call ``register`` with strings, so this stays cheap.
    """
    importlib.import_module("refseg_bench.methods")
    importlib.import_module("refseg_bench.datasets")
