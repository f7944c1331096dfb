"""Helpers shared by the model-layer tests (imported by name: tests/models is on sys.path)."""

from __future__ import annotations

from refseg_bench.models.checkpoints import CatalogueEntry


def make_entry(name: str, file_name: str, sha256: str | None, **kw) -> CatalogueEntry:
    """A catalogue entry for a test file (no real URL unless given)."""
    base = {"family": "test", "variant": "tiny", "url": f"http://127.0.0.1:1/{file_name}",
                "file_name": file_name, "sha256": sha256, "size": None, "licence": "test",
                "sha256_source": "computed in the test"}
    base.update(kw)
    return CatalogueEntry(name=name, **base)
