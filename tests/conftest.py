"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Sample photos with real mask encodings (FSS-1000, PerSeg, ADE20K) live outside the
# repository: this variable names the folder, else the checkout's sibling is used.
REAL_SAMPLES_ENV = "REFSEG_BENCH_REAL_SAMPLES"
REAL_SAMPLES_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" \
    / "real-samples"


def real_samples_dir() -> Path:
    """``$REFSEG_BENCH_REAL_SAMPLES``, else ``<checkout>/../shared/data/real-samples``."""
    env = os.environ.get(REAL_SAMPLES_ENV)
    return Path(env).expanduser() if env else REAL_SAMPLES_DEFAULT


@pytest.fixture(scope="session")
def real_samples() -> Callable[[str], Path]:
    """``real_samples("fss1000")``: that sub-folder of the sample photos; the test is
    skipped, saying where it looked and how to point elsewhere, when it is absent."""

    def folder(name: str) -> Path:
        path = real_samples_dir() / name
        if not path.is_dir():
            pytest.skip(f"sample photos not found at {path}; set {REAL_SAMPLES_ENV} to the "
                        "real-samples folder (default: ../shared/data/real-samples beside "
                        "the checkout)")
        return path

    return folder


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
