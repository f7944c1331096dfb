"""Headline lines the ``make perf`` summary collects from every benchmark script.

A benchmark prints its own table for people and, for each headline ratio, one line that
starts with ``PERF-RESULT`` (or ``PERF-SKIP`` for a section that could not run here, e.g.
a GPU section without CUDA) followed by one JSON object:

    PERF-RESULT {"name": "...", "value": 12.3, "target": 10.0, "unit": "x", "note": "..."}

``value`` is the measured ratio (or rate), ``target`` the goal it is held to (``null``
when it has none: the row is informative), ``higher`` whether larger is better.
``benchmarks/perf_summary.py`` runs every script and turns these lines into one table.
"""

from __future__ import annotations

import json
import math

RESULT_TAG = "PERF-RESULT"
SKIP_TAG = "PERF-SKIP"


def headline(name: str, value: float, target: float | None = None, *, unit: str = "x",
             note: str = "", higher: bool = True) -> None:
    """Print one machine-readable headline (and flush, so a killed run keeps it)."""
    if not math.isfinite(value):
        raise ValueError(f"headline {name!r}: value {value!r} is not a finite number")
    row = {"name": name, "value": round(float(value), 4), "target": target, "unit": unit,
           "higher": higher, "note": note}
    print(f"{RESULT_TAG} {json.dumps(row)}", flush=True)


def skipped(name: str, reason: str, target: float | None = None, *, unit: str = "x") -> None:
    """Print that a headline could not be measured here, and why."""
    row = {"name": name, "reason": reason, "target": target, "unit": unit}
    print(f"{SKIP_TAG} {json.dumps(row)}", flush=True)


def parse(text: str) -> list[dict]:
    """The headline rows in a script's output, in order; each dict gets ``status``
    (``"ok"`` or ``"skipped"``)."""
    rows = []
    for line in text.splitlines():
        tag, _, payload = line.strip().partition(" ")
        if tag in (RESULT_TAG, SKIP_TAG):
            row = json.loads(payload)
            row["status"] = "ok" if tag == RESULT_TAG else "skipped"
            rows.append(row)
    return rows
