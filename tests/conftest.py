"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(request, tmp_path_factory) -> Path:
    """Root of the default embedded synthetic benchmark (``SyntheticDataset(root)``).

    Generation is deterministic and versioned (``<root>/v1/meta.json``), so the copy is
    kept in pytest's cache directory and generated once per checkout (about 15 s of CPU),
    not once per session; without the cache plugin it goes to a session tmp dir. Treat it
    as read-only.
    """
    from refseg_bench.datasets.synthetic import SyntheticDataset

    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("refseg-bench-synthetic") if cache is not None \
        else tmp_path_factory.mktemp("synthetic")
    SyntheticDataset(root)  # generates on first use
    return Path(root)
