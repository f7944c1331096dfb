"""Fixtures for the model-layer tests."""

from __future__ import annotations

import pytest

from refseg_bench.models import checkpoints


@pytest.fixture
def fake_catalogue(monkeypatch, tmp_path):
    """Replace the packaged catalogue with given entries (see model_helpers.make_entry);
    the checkpoint directory becomes ``tmp_path / "ckpt"``."""
    monkeypatch.setenv(checkpoints.CHECKPOINTS_ENV, str(tmp_path / "ckpt"))

    def install(*entries):
        table = {e.name: e for e in entries}
        monkeypatch.setattr(checkpoints, "catalogue", lambda: table)
        return table

    return install
