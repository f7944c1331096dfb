"""Loud one-line notices on stderr for events a user must not miss in a long run (a fall
back to random weights, a fold trained before it is evaluated)."""

from __future__ import annotations

import sys


def say(source: str, message: str) -> None:
    """``[source] message`` in bold yellow on stderr (rich markup allowed in ``message``)."""
    from rich.console import Console

    Console(file=sys.stderr).print(f"[bold yellow][{source}][/bold yellow] {message}",
                                   soft_wrap=True)
